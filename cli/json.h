/* A minimal streaming JSON writer for --json output: commas placed automatically, strings
 * escaped, invalid UTF-8 replaced by U+FFFD so the output always parses. */
#ifndef RV_CLI_JSON_H
#define RV_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

struct json {
    FILE *f;
    int depth;
    bool first[JSON_MAX_DEPTH];
    bool after_key;
};

void json_init(struct json *j, FILE *f);
void json_object_begin(struct json *j);
void json_object_end(struct json *j);
void json_array_begin(struct json *j);
void json_array_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s); /* NULL prints null */
void json_string_n(struct json *j, const char *s, size_t n);
void json_uint(struct json *j, uint64_t v);
void json_int(struct json *j, int64_t v);
void json_double(struct json *j, double v); /* integers without a fraction */
void json_bool(struct json *j, bool v);
void json_null(struct json *j);

#endif
