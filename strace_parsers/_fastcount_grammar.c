/* The strace line grammar of strace_parsers/_fastcount.c: pure functions over the bytes
 * of one line, each the C twin of a piece of strace_parsers (line.py, values.py), giving
 * the same reading or, where it cannot be sure, declining (the caller then leaves the
 * line to Python). */
#include "_fastcount_grammar.h"

int fc_ascii_only(const char *s, const char *e)
{
    uint64_t acc = 0, w;
    for (; e - s >= 8; s += 8) {
        memcpy(&w, s, 8);
        acc |= w;
    }
    for (; s < e; s++)
        acc |= (uint8_t)*s;
    return (acc & 0x8080808080808080ULL) == 0;
}

/* The first `needle` in [p, e), found by memchr on its byte `key` (one that is rare in
 * strace output): glibc's memmem is several times slower on such text. */
const char *fc_find(const char *p, const char *e, const char *needle, size_t len,
                        size_t key)
{
    if (e - p < (Py_ssize_t)len)
        return NULL;
    for (const char *q = p + key; e - q >= (Py_ssize_t)(len - key);) {
        q = memchr(q, needle[key], (size_t)(e - q) - (len - key - 1));
        if (q == NULL)
            return NULL;
        if (memcmp(q - key, needle, len) == 0)
            return q - key;
        q++;
    }
    return NULL;
}

/* Digits at p as a value; NULL when there are none or more than MAX_DIGITS. */
static const char *read_uint(const char *p, const char *e, int64_t *out)
{
    const char *q = p;
    int64_t v = 0;
    while (q < e && is_digit(*q)) {
        if (q - p >= MAX_DIGITS)
            return NULL;
        v = v * 10 + (*q++ - '0');
    }
    if (q == p)
        return NULL;
    *out = v;
    return q;
}

static const char *skip_digits(const char *p, const char *e)
{
    while (p < e && is_digit(*p))
        p++;
    return p;
}

/* `D+.D+` at p, or NULL */
static const char *skip_decimal(const char *p, const char *e)
{
    const char *q = skip_digits(p, e);
    if (q == p || q >= e || *q != '.' || q + 1 >= e || !is_digit(q[1]))
        return NULL;
    return skip_digits(q + 1, e);
}

/* `-t`/`-tt`/`-ttt`/`-r` stamp, optional ` (+ D.D)`, then spaces; NULL: not sure. */
static const char *read_time(const char *p, const char *e)
{
    const char *q;
    if (e - p >= 8 && is_digit(p[0]) && is_digit(p[1]) && p[2] == ':' && is_digit(p[3])
        && is_digit(p[4]) && p[5] == ':' && is_digit(p[6]) && is_digit(p[7])) {
        q = p + 8;
        if (q + 1 < e && *q == '.' && is_digit(q[1]))
            q = skip_digits(q + 1, e);
    } else if ((q = skip_decimal(p, e)) == NULL) {
        return NULL;
    }
    if (e - q >= 3 && q[0] == ' ' && q[1] == '(' && q[2] == '+') {
        const char *r = q + 3;
        while (r < e && *r == ' ')
            r++;
        r = skip_decimal(r, e);
        if (r == NULL || r >= e || *r != ')')
            return NULL;
        q = r + 1;
    }
    if (q >= e || *q != ' ')
        return NULL;
    while (q < e && *q == ' ')
        q++;
    return q;
}

/* `PID[<comm>] +`, `[pid +PID[<comm>]] `, spaces, a time stamp, `-i`/`-n` fields: the
 * greedy reading strace_parsers.line.PREFIX_RE takes. NULL: leave the line to Python. */
const char *fc_read_prefix(const char *p, const char *e, int64_t *pid)
{
    *pid = -1;
    if (p < e && is_digit(*p)) {
        const char *q = skip_digits(p, e);
        if (q < e && *q == '<') {
            const char *gt = memchr(q, '>', (size_t)(e - q));
            if (gt == NULL || gt + 1 >= e || gt[1] != ' ')
                return NULL;
            q = gt + 1;
        }
        if (q < e && *q == ' ') {
            if (read_uint(p, e, pid) == NULL)
                return NULL;
            while (q < e && *q == ' ')
                q++;
            p = q;
        }
    } else if (e - p >= 5 && memcmp(p, "[pid ", 5) == 0) {
        const char *q = p + 5;
        while (q < e && *q == ' ')
            q++;
        if ((q = read_uint(q, e, pid)) == NULL)
            return NULL;
        if (q < e && *q == '<') {
            const char *gt = memchr(q, '>', (size_t)(e - q));
            if (gt == NULL)
                return NULL;
            q = gt + 1;
        }
        if (e - q < 2 || q[0] != ']' || q[1] != ' ')
            return NULL;
        p = q + 2;
    }
    while (p < e && *p == ' ')
        p++;
    if (p < e && is_digit(*p) && (p = read_time(p, e)) == NULL)
        return NULL;
    while (p < e && *p == '[') {
        const char *q = p + 1, *start;
        while (q < e && *q == ' ')
            q++;
        start = q;
        while (q < e && ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || *q == '?'))
            q++;
        if (q == start || q + 1 >= e || q[0] != ']' || q[1] != ' ')
            return NULL;
        p = q + 1;
        while (p < e && *p == ' ')
            p++;
    }
    return p;
}

/* A closed string literal starting at the quote at p: the offset after it, or NULL. */
const char *fc_string_end(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            if (++p >= e)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static const char *read_result_value(const char *p, const char *e, Result *r, int *minus_one,
                                     int *question)
{
    const char *q;
    *minus_one = *question = 0;
    r->has_value = r->big = 0;
    if (e - p >= 3 && p[0] == '0' && p[1] == 'x' && is_hex(p[2])) {
        uint64_t v = 0;
        for (q = p + 2; q < e && is_hex(*q); q++)
            v = v * 16 + (uint64_t)(is_digit(*q) ? *q - '0' : (*q | 0x20) - 'a' + 10);
        r->value = (int64_t)v;
        r->has_value = q - p - 2 <= 12;
        r->big = !r->has_value;
        return q;
    }
    if (p < e && *p == '?') {
        *question = 1;
        return p + 1;
    }
    q = (p < e && *p == '-') ? p + 1 : p;
    if (q >= e || !is_digit(*q))
        return NULL;
    const char *d = skip_digits(q, e);
    *minus_one = (q == p + 1 && d - q == 1 && *q == '1');
    if (d - q <= MAX_DIGITS) {
        read_uint(q, e, &r->value);
        r->value = q == p ? r->value : -r->value;
        r->has_value = 1;
    } else {
        r->big = 1;
    }
    return d;
}

/* ` <D+.D+>` at the very end: its value in ns, when it has at most 6+9 digits. */
static int read_duration(const char *from, const char *e, Result *r, const char **rest_end)
{
    const char *q = e - 1, *frac_end, *dot;
    int64_t whole = 0, frac = 0;
    *rest_end = e;
    r->has_dur = 0;
    if (q <= from || *q != '>')
        return 1;
    frac_end = q;
    while (q > from && is_digit(q[-1]))
        q--;
    if (q == frac_end || q <= from || q[-1] != '.')
        return 1;
    dot = --q;
    while (q > from && is_digit(q[-1]))
        q--;
    if (q == dot || q - from < 2 || q[-1] != '<' || q[-2] != ' ')
        return 1;
    if (dot - q > 6 || frac_end - dot - 1 > 9)
        return 0; /* Python rounds such ones the same way; leave them to it */
    read_uint(q, dot, &whole);
    for (const char *f = dot + 1; f < dot + 10; f++)
        frac = frac * 10 + (f < frac_end ? *f - '0' : 0);
    r->dur_ns = whole * 1000000000 + frac;
    r->has_dur = 1;
    *rest_end = q - 2;
    return 1;
}

/* ` (ERRNO|E?+|D+) (` at the start of the text after the return value */
static int has_errno(const char *p, const char *e)
{
    const char *q;
    if (e - p < 2 || *p != ' ')
        return 0;
    p++;
    if (*p >= 'A' && *p <= 'Z') {
        for (q = p + 1; q < e && ((*q >= 'A' && *q <= 'Z') || is_digit(*q) || *q == '_'); q++)
            ;
        if (e - q >= 2 && q[0] == ' ' && q[1] == '(')
            return 1;
    }
    if (*p == 'E' && p + 1 < e && p[1] == '?') {
        for (q = p + 1; q < e && *q == '?'; q++)
            ;
        if (e - q >= 2 && q[0] == ' ' && q[1] == '(')
            return 1;
    }
    if (is_digit(*p)) {
        q = skip_digits(p, e);
        if (e - q >= 2 && q[0] == ' ' && q[1] == '(')
            return 1;
    }
    return 0;
}

/* `) +=` followed by a space: one of split_result's candidates */
static inline int is_candidate(const char *p, const char *e)
{
    if (p + 1 >= e || p[1] != ' ')
        return 0;
    for (p++; p < e && *p == ' '; p++)
        ;
    return e - p >= 2 && p[0] == '=' && p[1] == ' ';
}

/* strace_parsers.line.split_result: the last `) += ` outside closed string literals, when
 * its result is well formed (else Python looks further back: 0). */
/* The last candidate, found from the end: the one split_result wants when no quote
 * follows it (a string span around it would need a closing quote after it). */
static const char *last_candidate_unquoted(const char *body, const char *e)
{
    for (const char *p = e - 1; p >= body; p--) {
        if (*p == '"')
            return NULL;
        if (*p == ')' && is_candidate(p, e))
            return p;
    }
    return NULL;
}

/* The last candidate outside closed string literals, reading the spans from the start. */
static const char *last_candidate_outside_strings(const char *p, const char *e)
{
    const char *cand = NULL, *q;
    while (p < e) {
        if (*p == '"') {
            q = fc_string_end(p, e);
            if (q == NULL) { /* unclosed: no string spans after it */
                for (p++; p < e; p++)
                    if (*p == ')' && is_candidate(p, e))
                        cand = p;
                break;
            }
            p = q;
            continue;
        }
        if (*p == ')' && is_candidate(p, e))
            cand = p;
        p++;
    }
    return cand;
}

int fc_split_result(const char *body, const char *e, Result *r)
{
    const char *cand = last_candidate_unquoted(body, e), *q, *rest, *rest_end;
    int minus_one, question;
    if (cand == NULL) /* a quote after the last `) = `: read the spans */
        cand = last_candidate_outside_strings(body, e);
    if (cand == NULL)
        return 0;
    q = cand + 1;
    while (*q == ' ')
        q++;
    rest = read_result_value(q + 2, e, r, &minus_one, &question);
    if (rest == NULL || !read_duration(rest, e, r, &rest_end))
        return 0;
    r->args_end = cand;
    r->has_errno = (minus_one || question) && has_errno(rest, rest_end);
    r->returned = !question || r->has_errno
                  || (rest_end - rest >= 14 && memcmp(rest, " <unavailable>", 14) == 0);
    return 1;
}

int fc_name_class(const char *n, Py_ssize_t len)
{
#define IS(s) (memcmp(n, s, sizeof(s) - 1) == 0)
    switch (len) {
    case 4:
        return IS("send") ? N_WRITE : N_PLAIN;
    case 5:
        return IS("write") ? N_WRITE : N_PLAIN;
    case 6:
        if (IS("sendto"))
            return N_WRITE;
        if (IS("writev"))
            return N_WRITEV;
        return IS("splice") ? N_PYTHON : N_PLAIN; /* its fd is the third argument */
    case 7:
        if (IS("sendmsg"))
            return N_SENDMSG;
        return IS("pwritev") ? N_PYTHON : N_PLAIN; /* its sizes need split_args */
    case 8:
        if (IS("sendmmsg"))
            return N_SENDMMSG;
        if (IS("pwrite64") || IS("sendfile"))
            return N_WRITE;
        return IS("pwritev2") ? N_PYTHON : N_PLAIN;
    case 10:
        return IS("sendfile64") ? N_WRITE : N_PLAIN;
    default:
        return N_PLAIN;
    }
#undef IS
}

/* values.classify_annotation: kind and protocol of `TCP:[...]`, `/path`, `pipe:[..]`, ...
 * -1: leave it to Python (a backslash: -xx hex text to decode first). */
static int classify(const char *a, const char *e, Key *key)
{
    const char *q;
    key->proto_len = 0;
    if (memchr(a, '\\', (size_t)(e - a)) != NULL)
        return -1;
    if (a < e && *a == '/') {
        key->kind = K_FILE;
        return 0;
    }
    key->kind = K_OTHER;
    if (a >= e || !((*a >= 'a' && *a <= 'z') || (*a >= 'A' && *a <= 'Z')))
        return 0;
    for (q = a + 1; q < e && (is_word(*q) || *q == '.' || *q == '+' || *q == '/' || *q == '-');
         q++)
        ;
    if (e - q < 3 || q[0] != ':' || q[1] != '[' || e[-1] != ']')
        return 0;
    if (q - a == 6 && memcmp(a, "socket", 6) == 0) {
        key->kind = K_SOCKET;
    } else if (q - a == 4 && memcmp(a, "pipe", 4) == 0) {
        key->kind = K_PIPE;
    } else if (*a >= 'A' && *a <= 'Z') {
        if (q - a >= PROTO_CAP)
            return -1;
        key->kind = K_SOCKET;
        key->proto_len = (uint8_t)(q - a);
        memcpy(key->proto, a, (size_t)(q - a));
    }
    return 0;
}

/* what may follow an fd annotation in values._FD_ARG_RE: `,`, ` <`, or only blanks */
static int fd_end_ok(const char *p, const char *e)
{
    if (p < e && (*p == ',' || (*p == ' ' && p + 1 < e && p[1] == '<')))
        return 1;
    while (p < e && is_py_space(*p))
        p++;
    return p == e;
}

/* values.parse_fd on the first argument: the annotation's kind and protocol, if any. */
int fc_fd_kind(const char *a, const char *e, Key *key)
{
    const char *q = a;
    key->kind = K_NONE;
    key->proto_len = 0;
    if (q < e && *q == '-')
        q++;
    if (q >= e || !is_digit(*q))
        return 0;
    q = skip_digits(q, e);
    if (q >= e || *q != '<')
        return 0;
    for (const char *gt = q + 1; gt < e; gt++)
        if (*gt == '>' && fd_end_ok(gt + 1, e))
            return classify(q + 1, gt, key);
    return 0;
}

/* Sum of the digits after each `tag` (findall of `tag(\d+)`); 0: none, -1: too big. */
int fc_sum_tagged(const char *p, const char *e, const char *tag, size_t tag_len,
                      int first_only, int64_t *sum)
{
    int found = 0;
    int64_t v;
    *sum = 0;
    while (e - p > (Py_ssize_t)tag_len) {
        const char *t = memchr(p, tag[0], (size_t)(e - p - (Py_ssize_t)tag_len));
        if (t == NULL)
            break;
        if (memcmp(t, tag, tag_len) != 0 || !is_digit(t[tag_len])) {
            p = t + 1;
            continue;
        }
        const char *d = read_uint(t + tag_len, e, &v);
        if (d == NULL || __builtin_add_overflow(*sum, v, sum))
            return -1;
        found = 1;
        if (first_only)
            break;
        p = d;
    }
    return found;
}

/* values.iov_sum: the iov_len sum, unless strace abbreviated the array (`...]` outside
 * strings). 1: *sum set; 0: None; -1: leave the line to Python. */
int fc_iov_sum(const char *a, const char *e, int64_t *sum)
{
    const char *p = a, *q;
    if (fc_find(a, e, "...]", 4, 3) == NULL)
        p = e; /* no `...]` at all: nothing abbreviated */
    while (p < e) {
        if (*p == '"') {
            q = fc_string_end(p, e);
            if (q == NULL) { /* unclosed: the rest is plain text */
                for (; e - p >= 4; p++)
                    if (memcmp(p, "...]", 4) == 0)
                        return 0;
                break;
            }
            p = (e - q >= 3 && memcmp(q, "...", 3) == 0) ? q + 3 : q;
            continue;
        }
        if (*p == '.' && e - p >= 4 && memcmp(p, "...]", 4) == 0)
            return 0;
        p++;
    }
    return fc_sum_tagged(a, e, "iov_len=", 8, 0, sum);
}

/* writev's count (values._int of the text after the last `, `): 1 set, 0 None, -1 Python */
int fc_writev_count(const char *a, const char *e, int64_t *count)
{
    const char *p = e - 1;
    while (p > a && !(p[-1] == ',' && p[0] == ' '))
        p--;
    p = p > a ? p + 1 : (e > a ? a + 1 : e);
    if (p == e)
        return 0; /* int("", 0) fails */
    for (const char *q = p; q < e; q++)
        if (!is_digit(*q))
            return -1; /* int(x, 0) takes more than digits: let Python read it */
    if (*p == '0') {
        for (const char *q = p; q < e; q++)
            if (*q != '0')
                return 0; /* int("012", 0) fails */
    }
    return read_uint(p, e, count) == NULL ? -1 : 1;
}

/* `[A-Za-z_]\w*` or `\?+` at p: its end, or p when there is none */
const char *fc_read_name(const char *p, const char *e)
{
    if (p < e && *p == '?') {
        while (p < e && *p == '?')
            p++;
    } else if (p < e && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_')) {
        for (p++; p < e && is_word(*p); p++)
            ;
    }
    return p;
}

/* What one call adds besides calls and errors, as SyscallEvent + aggregate's tally reads it:
 * the fd's kind, the bytes a write returned (-1: none), what a gather write asked for.
 * 1, or 0 to leave the line to Python. */
int fc_call_counts(const char *args, const char *args_end, int cls, const Result *r,
                   CallCounts *c)
{
    int64_t sum;
    int got;
    c->written = -1;
    c->has_req = c->has_iovs = 0;
    if (fc_fd_kind(args, args_end, &c->key) < 0)
        return 0;
    if (r->returned && !r->has_errno && cls != N_PLAIN) {
        if (r->big)
            return 0; /* more digits than C reads: Python's ints count it */
        if (cls == N_SENDMMSG && r->has_value) {
            /* sendmmsg returns a message count; its bytes are the msg_len of each */
            if ((got = fc_sum_tagged(args, args_end, "msg_len=", 8, 0, &sum)) < 0)
                return 0;
            c->written = got ? sum : r->value;
        } else if (r->has_value) {
            c->written = r->value;
        }
    }
    if (r->returned && cls >= N_WRITEV && cls <= N_SENDMMSG) {
        if ((got = fc_iov_sum(args, args_end, &c->req)) < 0)
            return 0;
        c->has_req = got;
        if (cls == N_WRITEV)
            got = fc_writev_count(args, args_end, &c->iovs);
        else
            got = fc_sum_tagged(args, args_end, "msg_iovlen=", 11, cls == N_SENDMSG, &c->iovs);
        if (got < 0)
            return 0;
        c->has_iovs = got;
    }
    return 1;
}
