/* Text from outside (torrent names, tracker messages, peer client names) made safe to show:
 * printable ASCII and well-formed UTF-8 stay, every other byte becomes '?'. */
#ifndef RV_UTIL_TEXT_H
#define RV_UTIL_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed UTF-8 sequence at p[0..n) (2 to 4 bytes), or 0. Overlong forms,
 * surrogates, values past U+10FFFF and the C1 controls (U+0080..U+009F, which some terminals
 * obey) are 0. */
size_t text_utf8_seq(const uint8_t *p, size_t n);

/* Copies p[0..n) into out (cap bytes, cap >= 4, always NUL-terminated): printable ASCII and well-formed UTF-8 are kept, every other byte becomes '?', and
 * text that does not fit ends in "...". Returns the length written. */
size_t text_printable(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
