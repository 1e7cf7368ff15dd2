/* Message Stream Encryption (the Vuze "Protocol Encryption" handshake): a pure codec, no
 * sockets. The owner feeds every byte received since the connection opened, sends what the
 * codec appends to its out buffer, and when the codec is done keeps its RC4 states (when RC4
 * was selected) to encrypt and decrypt the rest of the connection. */
#ifndef RV_PEER_MSE_H
#define RV_PEER_MSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* crypto_provide / crypto_select bits */
#define MSE_PLAIN 0x01u
#define MSE_RC4 0x02u

#define MSE_KEY_LEN 96  /* a DH public key on the wire, big-endian */
#define MSE_PAD_MAX 512 /* spec: PadA..PadD are 0..512 bytes */
#define MSE_ERR_LEN 96

/* True when RC4 can be used for the stream: OpenSSL 3 keeps it in the "legacy" provider, loaded
 * here into a private library context so the application's OpenSSL state is untouched.
 * Without it the handshake itself (always RC4-encrypted) runs on a small C RC4 and only
 * plaintext can be selected. */
bool mse_rc4_available(void);

struct mse;

/* The receiver learns the torrent only from HASH('req2', SKEY): the owner tries each info-hash
 * it holds with mse_skey_matches and copies the one that matches into skey. Returns true when
 * one matched. */
typedef bool (*mse_find_skey_cb)(void *ud, const struct mse *m, uint8_t skey[20]);

struct mse_opts {
    bool initiator;
    /* Initiator: the methods offered (MSE_PLAIN | MSE_RC4). Receiver: the methods accepted,
     * and prefer the one chosen when the initiator offers both. */
    uint32_t crypto;
    uint32_t prefer;
    const uint8_t *skey; /* initiator: the info-hash (20 bytes, copied) */
    const uint8_t *ia;   /* initiator: the initial payload, sent encrypted (copied) */
    size_t ia_len;
    mse_find_skey_cb find_skey; /* receiver */
    void *ud;
};

enum mse_state {
    MSE_A_WAIT_YB, /* initiator: Ya sent, waiting for Yb */
    MSE_A_SYNC_VC, /* looking for B's encrypted VC after PadB */
    MSE_A_SELECT,  /* crypto_select, len(PadD) */
    MSE_A_PADD,
    MSE_B_WAIT_YA,   /* receiver: waiting for Ya */
    MSE_B_SYNC_REQ1, /* looking for HASH('req1', S) after PadA */
    MSE_B_SKEY,      /* HASH('req2', SKEY) xor HASH('req3', S) */
    MSE_B_VC,        /* VC, crypto_provide, len(PadC) */
    MSE_B_PADC,
    MSE_B_IALEN,
    MSE_B_IA,
    MSE_DONE,
    MSE_FAILED
};

struct mse {
    enum mse_state state;
    struct mse_opts opts;
    uint8_t skey[20];
    uint8_t x[20];          /* our DH private key */
    uint8_t y[MSE_KEY_LEN]; /* our public key */
    uint8_t s[MSE_KEY_LEN]; /* the shared secret */
    uint8_t sync[20];       /* what we scan for: req1 hash, or B's encrypted VC */
    uint8_t req2x[20];      /* receiver: HASH('req2', SKEY) xor HASH('req3', S), read */
    size_t pos;             /* next byte of the received stream to parse */
    size_t need;            /* pad or IA length being waited for */
    uint32_t selected;      /* MSE_PLAIN or MSE_RC4 once done */
    void *enc, *dec;        /* RC4 states (mse_rc4_new): our direction, theirs */
    struct buf ia;          /* receiver: the decrypted initial payload */
    char err[MSE_ERR_LEN];
};

/* Starts the handshake: appends our public key and padding to out. Returns 0, RV_EINVAL (RC4
 * asked for and unavailable with nothing else allowed), RV_ENOMEM. mse_free must follow
 * either way. */
int mse_init(struct mse *m, const struct mse_opts *o, struct buf *out);
void mse_free(struct mse *m);

/* p[0..len): every byte received since the connection opened (the codec remembers how far it
 * parsed). Appends what must be sent to out. Returns 0 when more bytes are needed, 1 when the
 * handshake is done (then *used is its length: the bytes after it belong to the stream,
 * encrypted when m->selected is MSE_RC4; the receiver's initial payload is in m->ia,
 * decrypted), or RV_EPROTO with m->err saying what was wrong. */
int mse_feed(struct mse *m, const uint8_t *p, size_t len, struct buf *out, size_t *used);

/* For the receiver's find_skey callback. */
bool mse_skey_matches(const struct mse *m, const uint8_t skey[20]);

/* After the handshake selected RC4: encrypt what we send, decrypt what we receive, in place. */
void mse_encrypt(struct mse *m, uint8_t *p, size_t n);
void mse_decrypt(struct mse *m, uint8_t *p, size_t n);

/* A bare RC4 state (the known-answer test uses it): key, then drop keystream bytes spent.
 * OpenSSL's when available, else the C one. NULL for a key of 0 or over 256 bytes. */
void *mse_rc4_new(const uint8_t *key, size_t keylen, size_t drop);
void mse_rc4_apply(void *rc4, uint8_t *p, size_t n);
void mse_rc4_free(void *rc4);

#endif
