/* The strace line grammar shared by _fastcount.c and _fastcount_grammar.c. */
#ifndef FASTCOUNT_GRAMMAR_H
#define FASTCOUNT_GRAMMAR_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NAME_CAP 48
#define PROTO_CAP 48
#define MAX_DIGITS 15 /* larger numbers go to the Python path (its ints do not overflow) */
#define UNFINISHED "<unfinished ...>"
#define UNFINISHED_LEN 16
#define DETACHED "<detached ...>"
#define DETACHED_LEN 14
#define INJECTED "strace: Process "
#define INJECTED_LEN 16

enum { K_NONE, K_SOCKET, K_PIPE, K_FILE, K_OTHER };

/* what a call's name asks of the tally */
enum { N_PLAIN, N_WRITE, N_WRITEV, N_SENDMSG, N_SENDMMSG, N_PYTHON };

typedef struct {
    int64_t pid; /* -1: the line has none */
    uint8_t kind, name_len, proto_len;
    char name[NAME_CAP];
    char proto[PROTO_CAP];
} Key;

/* One call's result: `= RET[ rest][ <duration>]`. */
typedef struct {
    const char *args_end;
    int returned, has_errno, has_value, big, has_dur;
    int64_t value, dur_ns;
} Result;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline int is_word(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
/* Python's \s and str.strip() on ASCII: space, \t\n\v\f\r and \x1c-\x1f */
static inline int is_py_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

/* 1 when every byte is ASCII */
int fc_ascii_only(const char *s, const char *e);
/* the first `needle` in [p, e), found by memchr on needle[key]; NULL if none */
const char *fc_find(const char *p, const char *e, const char *needle, size_t len, size_t key);
/* the end of a closed string literal starting at the quote at p, or NULL */
const char *fc_string_end(const char *p, const char *e);
/* the end of the pid and time prefix (pid -1 when none), or NULL: leave it to Python */
const char *fc_read_prefix(const char *p, const char *e, int64_t *pid);
/* `[A-Za-z_]\w*` or `\?+` at p: its end (p when there is none) */
const char *fc_read_name(const char *p, const char *e);
/* the result after the last `) = ` outside strings: 1, or 0 to leave it to Python */
int fc_split_result(const char *body, const char *e, Result *r);
/* N_PLAIN, N_WRITE, ...: what a syscall's name asks of the tally */
int fc_name_class(const char *n, Py_ssize_t len);
/* the first argument's fd kind and protocol into key: 0, or -1 to leave it to Python */
int fc_fd_kind(const char *a, const char *e, Key *key);
/* sum of the numbers after each `tag`: 1 found, 0 none, -1 too big */
int fc_sum_tagged(const char *p, const char *e, const char *tag, size_t tag_len, int first_only,
                  int64_t *sum);
/* values.iov_sum: 1 (*sum set), 0 (None: abbreviated or no iov_len), -1 (Python) */
int fc_iov_sum(const char *a, const char *e, int64_t *sum);
/* writev's iovec count: 1 set, 0 None, -1 Python */
int fc_writev_count(const char *a, const char *e, int64_t *count);

/* What one call adds to its row besides calls and errors. */
typedef struct {
    Key key; /* kind and protocol set; the caller sets pid and name */
    int64_t written, req, iovs;
    int has_req, has_iovs;
} CallCounts;

int fc_call_counts(const char *args, const char *args_end, int cls, const Result *r,
                   CallCounts *c);

#endif
