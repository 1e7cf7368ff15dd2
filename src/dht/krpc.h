/* KRPC (BEP 5) messages over bencode, with BEP 32's IPv6 node lists and BEP 42's 'ip': a pure
 * codec. Every field's type and length is checked; compact lists must be whole entries and
 * only the first KRPC_MAX_NODES / KRPC_MAX_VALUES entries are taken. */
#ifndef RV_DHT_KRPC_H
#define RV_DHT_KRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rivulet/error.h"
#include "swarm/peers.h"
#include "util/buf.h"

#define KRPC_MAX_TID 16
#define KRPC_MAX_TOKEN 64
#define KRPC_MAX_NODES 16  /* per family, taken from one message */
#define KRPC_MAX_VALUES 100
#define KRPC_MAX_PACKET 1500

enum krpc_type { KRPC_QUERY, KRPC_RESPONSE, KRPC_ERROR };
enum krpc_method { KRPC_PING, KRPC_FIND_NODE, KRPC_GET_PEERS, KRPC_ANNOUNCE_PEER, KRPC_OTHER };

struct krpc_node {
    uint8_t id[20];
    struct peer_addr addr;
};

struct krpc_msg {
    enum krpc_type type;
    enum krpc_method method; /* queries */
    uint8_t tid[KRPC_MAX_TID];
    size_t tid_len;
    uint8_t id[20];          /* the sender's node id (queries and responses) */
    bool has_target;
    uint8_t target[20];      /* find_node 'target'; get_peers/announce_peer 'info_hash' */
    uint8_t token[KRPC_MAX_TOKEN];
    size_t token_len;
    uint16_t port;           /* announce_peer */
    bool implied_port;
    bool want4, want6;       /* BEP 32 'want' (neither: the sender's family) */
    bool read_only;          /* BEP 43 'ro' */
    struct krpc_node nodes[2 * KRPC_MAX_NODES]; /* 'nodes' then 'nodes6' */
    size_t nnodes;
    struct peer_addr values[KRPC_MAX_VALUES];
    size_t nvalues;
    bool has_ip;
    struct peer_addr ip;     /* BEP 42 'ip': the address the responder saw us at */
    int error_code;
    char error_msg[128];
};

/* Parses one KRPC packet. RV_EPROTO with err naming the field for anything malformed: not a
 * dictionary, no or a long 't', an unknown 'y', a query without 'a' or a 20-byte 'id', a
 * response without 'r'/'id', compact lists not of whole entries, a token over 64 bytes. */
int krpc_parse(const uint8_t *p, size_t len, struct krpc_msg *out, rv_error_t *err);

/* Queries. target: find_node's target or the info-hash (NULL for ping); token and port for
 * announce_peer (implied_port asks the receiver to use the packet's source port). */
int krpc_put_query(struct buf *out, enum krpc_method m, const uint8_t *tid, size_t tid_len,
                   const uint8_t id[20], const uint8_t *target, const uint8_t *token,
                   size_t token_len, uint16_t port, bool implied_port, bool want4, bool want6);
/* A response: nodes (either family, written to 'nodes' or 'nodes6'), values, token (get_peers),
 * and 'ip' (the requester's address, BEP 42). */
int krpc_put_response(struct buf *out, const uint8_t *tid, size_t tid_len, const uint8_t id[20],
                      const struct krpc_node *nodes, size_t nnodes,
                      const struct peer_addr *values, size_t nvalues, const uint8_t *token,
                      size_t token_len, const struct peer_addr *requester);
int krpc_put_error(struct buf *out, const uint8_t *tid, size_t tid_len, int code,
                   const char *msg);

#endif
