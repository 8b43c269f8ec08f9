/* admin-int.h - what the admin commands' files share (not a library API): the client in
 * admin_client.c (options, the admin kit, one connection to the coordinator's admin port
 * with requests in turn, the answer helpers and printers) and the commands in cmd_admin.c
 * (status, agents, crl), cmd_admin_job.c (job) and cmd_admin_model.c (model).
 *
 * Every function that can fail prints its error ("fedvault: error: ...", or a usage
 * error) and returns an exit code of cli-int.h; a string from the coordinator goes
 * through fv__cli_safe or fv__cli_put_safe before it reaches the terminal.
 */
#ifndef FV_CLI_ADMIN_INT_H
#define FV_CLI_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "cli-int.h"
#include "fv_conn.h"
#include "fv_tls.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define HOST_MAX 256
#define CELL_MAX 96 /* a table cell's text, NUL included */

/* The end of the admin groups' --help texts (status, agents, crl, job, model). */
#define COMMON_OPTS                                                                                \
    "Common options:\n"                                                                            \
    "  --config FILE      the admin kit's admin.json (default $FEDVAULT_ADMIN_CONFIG,\n"           \
    "                     else ./admin.json)\n"                                                    \
    "  --admin HOST:PORT  the coordinator's admin port (default: the config's \"admin\"\n"         \
    "                     field, else its \"coordinator\" field)\n"                                \
    "  --timeout SECONDS  give up when connecting or an answer takes longer (default 30)\n"        \
    "  --json             print the coordinator's JSON answer as is\n"                             \
    "  -h, --help         this text\n"                                                             \
    "\n"                                                                                           \
    "Exit status: 0 success, 1 the coordinator refused or the command failed, 2 usage\n"           \
    "error, 3 the coordinator could not be reached or the TLS handshake/authentication\n"          \
    "failed.\n"

/* ---- options: one getopt_long table, each subcommand allows some of it ------------- */

enum {
    OPT_CONFIG = 256,
    OPT_ADMIN,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_INTERVAL,
    OPT_OUT,
    OPT_LABEL,
    OPT_SCHEMA
};

typedef struct args {
    const char *cmd;   /* "job show", for messages */
    const char *usage; /* the group's --help text */
    const char *config, *admin, *out, *label, *schema;
    double timeout_s, interval_s;
    bool json;
    const char *pos[2]; /* positional arguments */
    int n_pos;
} args_t;

/* --config, --admin, --timeout, --json: what every request command takes. */
extern const int fv__cli_admin_opts_common[4];

/* Returns -1 to go on, or an exit code (help, usage error). argv[0] is the subcommand
 * word ("show"); n_pos positional arguments are required, named by pos_names. */
int fv__cli_admin_parse(int argc, char **argv, const int *allowed, size_t n_allowed, int n_pos,
                        const char *pos_names, args_t *a);

/* ---- messages ----------------------------------------------------------------------- */

/* "fedvault: error: <message>" on stderr. */
void fv__cli_admin_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A string from the coordinator made safe for the terminal: control bytes (and DEL)
 * become '?'; at most cap-1 bytes. Returns buf. */
const char *fv__cli_safe(const char *s, char *buf, size_t cap);
/* s written to f with control bytes other than newline and tab (and DEL) as '?'. */
void fv__cli_put_safe(const char *s, FILE *f);

/* ---- the admin kit and the connection ----------------------------------------------- */

typedef struct kit {
    char *root_text; /* the config file's bytes */
    json_t *root;
    const char *path;            /* the config file */
    char *ca, *cert, *key, *crl; /* resolved paths (malloc'd); crl may be NULL */
    const char *federation, *name;
    char host[HOST_MAX];
    int port;
    char addr[HOST_MAX + 16]; /* HOST:PORT as given, for messages */
} kit_t;

typedef struct admin_resp {
    int32_t status;
    char *body; /* NUL-terminated copy */
    size_t body_len;
    uint8_t *data;
    size_t data_len;
} admin_resp_t;

/* Frees a response's body and data and zeroes it. */
void fv__cli_admin_resp_free(admin_resp_t *r);

typedef struct admin {
    uv_loop_t loop;
    uv_timer_t timer; /* the deadline of what we wait for; also watch's interval */
    fv_tls_ctx_t *ctx;
    fv_client_t *client; /* NULL once its connection closed (fv_conn freed it) */
    fv_conn_t *conn;     /* the open connection, NULL before on_open and after close */
    const kit_t *kit;
    double timeout_s;
    bool loop_ready, timer_ready;
    bool opened, closed, fired;
    int close_err;
    char close_why[512];
    uint32_t next_id, want_id;
    bool waiting, got;
    admin_resp_t resp;
    int fail; /* a local failure while handling a message (FV_ENOMEM) */
} admin_t;

/* Loads the kit (a->config, $FEDVAULT_ADMIN_CONFIG or ./admin.json) and connects.
 * Returns 0 or an exit code (the error printed); fv__cli_admin_session_close is needed
 * either way. */
int fv__cli_admin_session_open(const args_t *a, kit_t *k, admin_t *s);
void fv__cli_admin_session_close(admin_t *s, kit_t *k);
/* Sends one request (args: JSON text) and handles a refusal; 0 with *r and *ret_body
 * (the parsed object) filled, both the caller's to free, or an exit code (the error
 * printed, nothing to free). */
int fv__cli_admin_request(admin_t *s, const char *cmd, const char *args, admin_resp_t *r,
                          json_t **ret_body);
/* Waits ms with the connection serviced; false if it closed meanwhile. */
bool fv__cli_admin_sleep(admin_t *s, uint64_t ms);
/* Prints why the connection is gone (or never came) and returns FV_EXIT_UNREACHABLE.
 * what: "'job.show'" (the request waited for) or "" (connecting). */
int fv__cli_admin_unreachable(admin_t *s, const char *what);

/* ---- one request per command ---------------------------------------------------------- */

/* args JSON text from a jansson object (stolen). NULL on out of memory (printed). */
char *fv__cli_admin_args_dump(json_t *o);
/* Connects, sends one request (args from fv__cli_admin_args_dump, taken; NULL: out of
 * memory, already printed), handles refusal and --json; on success with a readable
 * format wanted, returns -1 with *ret_body (the parsed object, caller decrefs). */
int fv__cli_admin_call_owned(const args_t *a, const char *cmd, char *args, json_t **ret_body);
/* A command without positional arguments whose request takes no args: the common
 * options, then the request, as fv__cli_admin_call_owned. */
int fv__cli_admin_noarg_call(int argc, char **argv, args_t *a, const char *cmd, json_t **ret_body);

typedef struct col {
    const char *head, *key;
    int shorten; /* >0: strings longer than 16 cut to this many characters */
} col_t;

/* A `... list` command: the array `key` of the answer as a table, or the line `none`. */
typedef struct list_cmd {
    const char *cmd, *usage; /* "job list", the group's --help text */
    const char *req, *key, *none;
    const col_t *cols;
    size_t n_cols;
} list_cmd_t;

int fv__cli_admin_list_run(int argc, char **argv, const list_cmd_t *l);

/* A group's subcommand: run gets argv from the subcommand word on. */
typedef struct sub {
    const char *name;
    int (*run)(int argc, char **argv);
} sub_t;

/* Runs the group's subcommand named by argv[1]; --help for the group. */
int fv__cli_admin_group_run(int argc, char **argv, const char *group, const char *usage,
                            const sub_t *subs, size_t n_subs);

/* ---- answers: fields and printers ----------------------------------------------------- */

/* A field as text for a table: "-" when missing or null; numbers as numbers; booleans
 * yes/no; an array as its length; an object as compact JSON. Borrowed or in buf. */
const char *fv__cli_ftxt(const json_t *o, const char *key, char *buf, size_t cap);
/* A number field into *ret (false: absent or not a number); a string field (NULL: absent
 * or not a string). o may be NULL or not an object. */
bool fv__cli_fnum(const json_t *o, const char *key, double *ret);
const char *fv__cli_fstr(const json_t *o, const char *key);
/* Seconds as "1d 02:03:04", "02:03:04" or "-" (!have, not finite, out of range). */
const char *fv__cli_dur(double s, bool have, char *buf, size_t cap);
/* A table of the objects in arr (non-objects print as rows of "-"). */
void fv__cli_print_table(const json_t *arr, const col_t *cols, size_t n_cols);
/* "key  value" lines for the given fields of o. */
void fv__cli_print_fields(const json_t *o, const char *const *keys, size_t n, int width);
/* JSON printed indented by `indent` spaces. */
void fv__cli_print_json_indented(const json_t *v, int indent);

#endif
