/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/store/: the connection struct, the statement table type, the
 * parameter builder and the column readers every query file uses.
 *
 * Results are always requested in binary format, so every column read checks
 * its type OID and its exact byte length before decoding; a row that fails is
 * COFFER_E_INTEGRITY with "table.column: what is wrong". Parameters are bound,
 * never formatted into SQL text.
 */
#ifndef COFFER_STORE_INT_H
#define COFFER_STORE_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/arena.h"
#include "coffer/buf.h"
#include "coffer/err.h"
#include "coffer/store.h"
#include "coffer/uuid.h"

/* Type OIDs of the columns and parameters Coffer uses (fixed in pg_type.dat). */
#define STORE_OID_BOOL 16u
#define STORE_OID_BYTEA 17u
#define STORE_OID_INT8 20u
#define STORE_OID_INT4 23u
#define STORE_OID_TEXT 25u
#define STORE_OID_TEXT_ARRAY 1009u
#define STORE_OID_UUID 2950u
#define STORE_OID_UUID_ARRAY 2951u
#define STORE_OID_INT4_ARRAY 1007u
#define STORE_OID_BYTEA_ARRAY 1001u

#define STORE_MAX_PARAMS 24

/*
 * The largest ciphertext a credential version may hold: the payload limit of
 * keys.h plus room for the per-key framing the envelope adds around values.
 */
#define STORE_CIPHERTEXT_MAX (256u * 1024u + 16u * 1024u)

struct coffer_store {
    PGconn *conn;
    bool in_tx;                       /* a transaction begun with coffer_store_begin is open */
    char sqlstate[6];                 /* SQLSTATE of the last failed statement, "" if none */
    const struct store_stmt *pending; /* sent by store_send, not yet received */
    bool reader;                      /* reads the audit views only: nothing prepared */
};

/* One named statement, prepared once per connection by coffer_store_open. */
struct store_stmt {
    const char *name;
    const char *sql;
    int nparams;
    unsigned int types[STORE_MAX_PARAMS];
    int ncols; /* columns the statement returns; 0 for a command without RETURNING */
};

/* NULL-terminated lists of the statements each query file owns. */
extern const struct store_stmt *const store_stmts_orgs[];
extern const struct store_stmt *const store_stmts_master_keys[];
extern const struct store_stmt *const store_stmts_org_keys[];
extern const struct store_stmt *const store_stmts_creds[];
extern const struct store_stmt *const store_stmts_policy[];
extern const struct store_stmt *const store_stmts_phase[];
extern const struct store_stmt *const store_stmts_access[];
extern const struct store_stmt *const store_stmts_audit[];
extern const struct store_stmt *const store_stmts_meta[];
extern const struct store_stmt *const store_stmts_tokens[];
extern const struct store_stmt *const store_stmts_requests[];
extern const struct store_stmt *const store_stmts_key_expiry[];
extern const struct store_stmt *const store_stmts_audit_log[];
extern const struct store_stmt *const store_stmts_audit_keys[];
extern const struct store_stmt *const store_stmts_oauth2[];

/* Bound parameters of one execution. Binary ints are stored inside the struct. */
struct store_params {
    int n;
    bool overflow;
    const char *values[STORE_MAX_PARAMS];
    int lengths[STORE_MAX_PARAMS];
    int formats[STORE_MAX_PARAMS];
    unsigned char ints[STORE_MAX_PARAMS][8];
};

/* Each adder records the next parameter; more than STORE_MAX_PARAMS sets overflow. */
void store_param_uuid(struct store_params *p, const struct coffer_uuid *u);
/* A NULL uuid parameter. */
void store_param_null(struct store_params *p);
void store_param_int4(struct store_params *p, int32_t v);
void store_param_int8(struct store_params *p, int64_t v);
void store_param_text(struct store_params *p, const char *s);
void store_param_bytea(struct store_params *p, const unsigned char *b, size_t len);
/* A binary text[] already encoded by store_encode_text_array (borrowed). */
void store_param_binary(struct store_params *p, const unsigned char *b, size_t len);

/*
 * Executes a prepared statement with binary results. COFFER_OK with *res set
 * (the caller PQclears it) when the server answered with rows or a command
 * tag; otherwise the mapped error (see store_result_error) and *res NULL.
 * what names the operation for the detail ("inserting org").
 */
enum coffer_err store_exec(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what,
                           PGresult **res) COFFER_MUST_USE;

/*
 * The two halves of store_exec, for a caller that works while the server
 * answers: store_send sends the statement without waiting (COFFER_E_STATE if
 * one is already in flight); store_recv waits for its answer, with the same
 * results as store_exec. While a statement is in flight every other call on
 * the connection is refused with COFFER_E_STATE; rollback and close discard
 * the answer.
 */
enum coffer_err store_send(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what) COFFER_MUST_USE;
enum coffer_err store_recv(struct coffer_store *s, const char *what,
                           PGresult **res) COFFER_MUST_USE;

/*
 * Maps a failed result: lost connection or SQLSTATE class 08 / 57P0x
 * COFFER_E_DB_UNAVAILABLE, 23505 COFFER_E_EXISTS, 40001 and 40P01
 * COFFER_E_CONFLICT, anything else COFFER_E_DB with the SQLSTATE and the
 * server's primary message (never its DETAIL, which may quote values).
 * Records the SQLSTATE in s->sqlstate.
 */
enum coffer_err store_result_error(struct coffer_store *s, const PGresult *res, const char *what);

/*
 * The same mapping for a bare connection (bootstrap and migrations). sqlstate
 * (6 bytes, may be NULL) receives the SQLSTATE or "".
 */
enum coffer_err store_pg_error(PGconn *conn, const PGresult *res, const char *what, char *sqlstate);

/* Copies libpq's connection message into out with newlines folded, no trailing newline. */
void store_conn_message(PGconn *conn, char *out, size_t cap);

/* Whether the last failed statement had this SQLSTATE. */
bool store_sqlstate_is(const struct coffer_store *s, const char *code);

/* Runs fn inside a transaction: the caller's if one is open, else its own. */
enum coffer_err store_in_tx(struct coffer_store *s,
                            enum coffer_err (*fn)(struct coffer_store *, void *), void *arg,
                            const char *what) COFFER_MUST_USE;

/* COFFER_E_STATE unless a transaction is open (for row locks that must last). */
enum coffer_err store_require_tx(const struct coffer_store *s, const char *what) COFFER_MUST_USE;

/* Rows affected by a command, from its tag; -1 if the tag is not a number. */
long store_affected(const PGresult *res);

/*
 * COFFER_E_NOT_FOUND if res has no rows, COFFER_E_INTEGRITY if it has more
 * than one (a unique key answered twice), COFFER_OK for exactly one.
 */
enum coffer_err store_one_row(const PGresult *res, const char *what) COFFER_MUST_USE;

/* ---- Column readers: each checks type, NULL and length; where is "table.column". ---- */

/*
 * The value of a column after checking its type oid and binary format; *p is
 * NULL for SQL NULL. The base of the readers below.
 */
enum coffer_err store_col_raw(const PGresult *res, int row, int col, const char *where,
                              unsigned int oid, const unsigned char **p,
                              size_t *len) COFFER_MUST_USE;

enum coffer_err store_col_uuid(const PGresult *res, int row, int col, const char *where,
                               struct coffer_uuid *out) COFFER_MUST_USE;
/* An int4 in [min, INT32_MAX]. */
enum coffer_err store_col_u32(const PGresult *res, int row, int col, const char *where,
                              uint32_t min, uint32_t *out) COFFER_MUST_USE;
/* As store_col_u32, but NULL reads as 0. */
enum coffer_err store_col_u32_or_zero(const PGresult *res, int row, int col, const char *where,
                                      uint32_t *out) COFFER_MUST_USE;
/* A non-negative int8. */
enum coffer_err store_col_count(const PGresult *res, int row, int col, const char *where,
                                int64_t *out) COFFER_MUST_USE;
/* Text of at most cap - 1 bytes without NUL, copied with its terminator. */
enum coffer_err store_col_text(const PGresult *res, int row, int col, const char *where, char *out,
                               size_t cap) COFFER_MUST_USE;
/* bytea of exactly len bytes. */
enum coffer_err store_col_bytea_exact(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t len) COFFER_MUST_USE;
/* bytea of min..max bytes into out (max bytes of room). */
enum coffer_err store_col_bytea_range(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t min, size_t max,
                                      size_t *len) COFFER_MUST_USE;
/* bytea of 0..max bytes, copied into a new allocation (coffer_free). */
enum coffer_err store_col_bytea_alloc(const PGresult *res, int row, int col, const char *where,
                                      size_t max, unsigned char **out, size_t *len) COFFER_MUST_USE;
/* One of the four key states. */
enum coffer_err store_col_state(const PGresult *res, int row, int col, const char *where,
                                enum coffer_key_state *out) COFFER_MUST_USE;
/* A name matching ^[a-z0-9][a-z0-9_-]{0,62}$. */
enum coffer_err store_col_name(const PGresult *res, int row, int col, const char *where,
                               char out[COFFER_NAME_MAX + 1]) COFFER_MUST_USE;
/* Exactly the text expect (mechanism names). */
enum coffer_err store_col_mech(const PGresult *res, int row, int col, const char *where,
                               const char *expect,
                               char out[COFFER_MECH_NAME_MAX + 1]) COFFER_MUST_USE;
/* A one-dimensional text[] of 1..COFFER_KEYS_MAX valid key names, newly allocated. */
enum coffer_err store_col_key_names(const PGresult *res, int row, int col, const char *where,
                                    char ***out, size_t *n) COFFER_MUST_USE;

/* ---- Input checks and encodings shared by the query files ---- */

/* COFFER_E_INVALID unless name matches ^[a-z0-9][a-z0-9_-]{0,62}$. what names the field. */
enum coffer_err store_check_name(const char *name, const char *what) COFFER_MUST_USE;
/* COFFER_E_INVALID unless description (not NULL) is 1..COFFER_POLICY_DESC_MAX bytes of text. */
enum coffer_err store_check_description(const char *description) COFFER_MUST_USE;
/* Whether s (len bytes) matches ^[a-z0-9][a-z0-9_-]{0,62}$. */
bool store_name_ok(const char *s, size_t len);
/* Whether s is a key name: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}, len bytes. */
bool store_key_name_ok(const char *s, size_t len);
/* COFFER_E_INVALID unless 1 <= v <= INT32_MAX. */
enum coffer_err store_check_version(uint32_t v, const char *what) COFFER_MUST_USE;
/* Parses a state name; false if unknown. */
bool store_state_parse(const char *s, size_t len, enum coffer_key_state *out);

/*
 * Appends n elements of type elem_oid (each lens[i] bytes in the type's binary
 * form) to out in the binary send format of a one-dimensional array.
 */
enum coffer_err store_encode_array(uint32_t elem_oid, size_t n, const void *const *elems,
                                   const size_t *lens, struct coffer_buf *out) COFFER_MUST_USE;

/*
 * Appends names to out (zero-initialised) in the binary send format of a
 * one-dimensional text[]; release with coffer_buf_cleanup.
 */
enum coffer_err store_encode_text_array(char *const *names, size_t n,
                                        struct coffer_buf *out) COFFER_MUST_USE;

/* ---- Lists and policy values (lists.c) ---- */

/* How a text value read from a row is checked. */
enum store_text_kind {
    STORE_TEXT_NAME,      /* ^[a-z0-9][a-z0-9_-]{0,62}$ */
    STORE_TEXT_TEXT,      /* UTF-8 without control characters (coffer_text_ok) */
    STORE_TEXT_NAME_LIST, /* "" or names joined by commas (each checked where it is split) */
};

/*
 * Appends n strings in the binary send format of a one-dimensional text[]
 * (n may be 0; a NULL pointer is a NULL element).
 */
enum coffer_err store_encode_strings(const char *const *v, size_t n,
                                     struct coffer_buf *out) COFFER_MUST_USE;

/*
 * The same with each string's length given (lens[i] bytes of v[i], which
 * need not be NUL-terminated); lens NULL means strlen of each.
 */
enum coffer_err store_encode_texts(const char *const *v, const size_t *lens, size_t n,
                                   struct coffer_buf *out) COFFER_MUST_USE;

/*
 * A text[] column of at most max_n elements, each of 1..max_len bytes checked
 * by kind, copied into a; NULL elements only when nulls is true. An SQL NULL
 * or empty array gives n == 0.
 */
enum coffer_err store_col_strings(const PGresult *res, int row, int col, const char *where,
                                  struct coffer_arena *a, size_t max_n, size_t max_len,
                                  enum store_text_kind kind, bool nulls, const char ***out,
                                  size_t *n) COFFER_MUST_USE;

/* A text column of 1..max_len bytes checked by kind, copied into a; SQL NULL gives NULL if
 * nullable. */
enum coffer_err store_col_string(const PGresult *res, int row, int col, const char *where,
                                 struct coffer_arena *a, size_t max_len, enum store_text_kind kind,
                                 bool nullable, const char **out) COFFER_MUST_USE;

/* An int8 of any value; *is_null tells SQL NULL (then *out is 0). */
enum coffer_err store_col_int8_opt(const PGresult *res, int row, int col, const char *where,
                                   bool *is_null, int64_t *out) COFFER_MUST_USE;

/* A non-NULL boolean. */
enum coffer_err store_col_bool(const PGresult *res, int row, int col, const char *where,
                               bool *out) COFFER_MUST_USE;

/* Runs a fixed statement without parameters on a bare connection; COFFER_OK or the mapped error. */
enum coffer_err store_run_command(PGconn *conn, const char *sql, const char *what) COFFER_MUST_USE;

/* Makes the connection's notices go to the debug log instead of stderr. */
void store_quiet_notices(PGconn *conn);

/*
 * Connects with conninfo (adding connect_timeout=5 and application_name=coffer
 * unless given), and pins search_path to pg_catalog. On failure
 * COFFER_E_DB_UNAVAILABLE with libpq's message and a description of the target
 * that never includes a password.
 */
enum coffer_err store_connect(const char *conninfo, PGconn **out) COFFER_MUST_USE;

/*
 * The approvals in force of an access load (requests.c): four aligned
 * arrays at columns col..col+3 of row (agent types, instances, from and
 * until in microseconds), each window checked, into in->approvals (in a).
 */
enum coffer_err store_read_approvals(const PGresult *res, int row, int col, struct coffer_arena *a,
                                     struct coffer_authz_input *in) COFFER_MUST_USE;

/*
 * The per-key expiry of a version (key_expiry.c): an int8[] of exactly
 * n_keys microsecond instants aligned with its key names, a NULL element
 * read as COFFER_AUTHZ_NO_EXPIRY; SQL NULL gives *out NULL (no key has
 * one). Allocated in a.
 */
enum coffer_err store_col_key_expiry(const PGresult *res, int row, int col, const char *where,
                                     struct coffer_arena *a, size_t n_keys,
                                     const int64_t **out) COFFER_MUST_USE;

#endif
