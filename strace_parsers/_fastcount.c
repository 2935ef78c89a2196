/* The counting path of strace_parsers in C: complete, unfinished and resumed call lines.
 *
 * `Counter.scan(buf, pos, end, py_pending)` walks the lines of `buf[pos:end]` and tallies
 * each call line into rows keyed by (pid, name, fd kind, fd protocol), as the Python
 * reader (strace_parsers/stream.py, line.py, values.py) would: same grammar, same
 * results, by construction narrower. It stops at the first line it does not know for sure
 * (signals, exits, the -C table, strace's own messages, blank, non-ASCII or odd lines, a
 * number too big for 15 digits, splice and pwritev) and returns its offset: the caller
 * feeds that line to the Python reader, after taking the unfinished calls held here
 * (`take_pending`) into the reader, so that one table of pending calls exists at a time.
 * Lines of a pid the Python reader holds a pending call for (`py_pending`) are left to it.
 */
#include "_fastcount_grammar.h"

#define HIST_SLOTS 66 /* slot 0: 0 bytes; slot k+1: (2**(k-1), 2**k] bytes, k capped at 64 */
static const char *const KIND_NAMES[] = {NULL, "socket", "pipe", "file", "other"};

typedef struct {
    Key key;
    int64_t calls, errors, bytes, dur_ns, timed, unreturned, req_bytes, req_calls, iov_count;
    int64_t hist[HIST_SLOTS];
} Row;

typedef struct {
    int64_t pid;
    int used;
    char *line; /* a copy of the whole unfinished line, for the Python reader */
    Py_ssize_t line_cap, line_len, name_off, name_len, args_off, args_len;
} Pending;

#define SPARE_LINES 32

typedef struct {
    char *line;
    Py_ssize_t cap;
} Spare;

typedef struct {
    PyObject_HEAD
    int has_fixed_pid;
    int64_t fixed_pid;
    Row **rows;
    Py_ssize_t rows_cap, rows_used;
    Pending *pend;
    Py_ssize_t pend_cap, pend_used;
    char *scratch;
    Py_ssize_t scratch_cap;
    Spare spare[SPARE_LINES]; /* line buffers of ended calls, for the next ones */
    int spares;
} Counter;

/* -- rows: one per (pid, name, fd kind, protocol), an open-addressing table ------------ */

static uint64_t key_hash(const Key *k)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)k->pid;
    h = (h ^ k->kind) * 1099511628211ULL;
    for (int i = 0; i < k->name_len; i++)
        h = (h ^ (uint8_t)k->name[i]) * 1099511628211ULL;
    for (int i = 0; i < k->proto_len; i++)
        h = (h ^ (uint8_t)k->proto[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int key_eq(const Key *a, const Key *b)
{
    return a->pid == b->pid && a->kind == b->kind && a->name_len == b->name_len
           && a->proto_len == b->proto_len && memcmp(a->name, b->name, a->name_len) == 0
           && memcmp(a->proto, b->proto, a->proto_len) == 0;
}

static int rows_grow(Counter *self)
{
    Py_ssize_t cap = self->rows_cap ? self->rows_cap * 2 : 64;
    Row **fresh = PyMem_Calloc((size_t)cap, sizeof(Row *));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->rows_cap; i++) {
        Row *row = self->rows[i];
        if (row == NULL)
            continue;
        size_t j = (size_t)key_hash(&row->key) & (size_t)(cap - 1);
        while (fresh[j] != NULL)
            j = (j + 1) & (size_t)(cap - 1);
        fresh[j] = row;
    }
    PyMem_Free(self->rows);
    self->rows = fresh;
    self->rows_cap = cap;
    return 0;
}

static Row *row_for(Counter *self, const Key *key)
{
    if (2 * (self->rows_used + 1) > self->rows_cap && rows_grow(self) < 0)
        return NULL;
    size_t mask = (size_t)(self->rows_cap - 1), j = (size_t)key_hash(key) & mask;
    for (; self->rows[j] != NULL; j = (j + 1) & mask)
        if (key_eq(&self->rows[j]->key, key))
            return self->rows[j];
    Row *row = PyMem_Calloc(1, sizeof(Row));
    if (row == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    row->key = *key;
    self->rows[j] = row;
    self->rows_used++;
    return row;
}

/* -- unfinished calls, by pid ----------------------------------------------------------- */

static Pending *pending_find(Counter *self, int64_t pid)
{
    if (self->pend_used == 0)
        return NULL;
    size_t mask = (size_t)(self->pend_cap - 1), j = ((uint64_t)pid * 0x9E3779B97F4A7C15ULL) >> 40;
    for (j &= mask; self->pend[j].used; j = (j + 1) & mask)
        if (self->pend[j].pid == pid)
            return &self->pend[j];
    return NULL;
}

static void release_line(Counter *self, Pending *slot)
{
    if (self->spares < SPARE_LINES)
        self->spare[self->spares++] = (Spare){slot->line, slot->line_cap};
    else
        PyMem_Free(slot->line);
    slot->line = NULL;
}

static char *acquire_line(Counter *self, Py_ssize_t len, Py_ssize_t *cap)
{
    while (self->spares > 0) {
        Spare sp = self->spare[--self->spares];
        if (sp.cap >= len) {
            *cap = sp.cap;
            return sp.line;
        }
        PyMem_Free(sp.line);
    }
    *cap = len < 256 ? 256 : len;
    char *line = PyMem_Malloc((size_t)*cap);
    if (line == NULL)
        PyErr_NoMemory();
    return line;
}

static void pending_remove(Counter *self, Pending *slot)
{
    /* backward-shift deletion keeps every probe sequence unbroken */
    size_t mask = (size_t)(self->pend_cap - 1), i = (size_t)(slot - self->pend), j = i;
    release_line(self, slot);
    slot->used = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!self->pend[j].used)
            break;
        size_t home = (((uint64_t)self->pend[j].pid * 0x9E3779B97F4A7C15ULL) >> 40) & mask;
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            self->pend[i] = self->pend[j];
            self->pend[j].used = 0;
            i = j;
        }
    }
    self->pend_used--;
}

static int pending_insert(Counter *self, Pending *entry)
{
    if (2 * (self->pend_used + 1) > self->pend_cap) {
        Py_ssize_t old_cap = self->pend_cap, cap = old_cap ? old_cap * 2 : 16;
        Pending *old = self->pend, *fresh = PyMem_Calloc((size_t)cap, sizeof(Pending));
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pend = fresh;
        self->pend_cap = cap;
        self->pend_used = 0;
        for (Py_ssize_t i = 0; i < old_cap; i++)
            if (old[i].used)
                pending_insert(self, &old[i]); /* cannot fail: room is there */
        PyMem_Free(old);
    }
    size_t mask = (size_t)(self->pend_cap - 1);
    size_t j = (((uint64_t)entry->pid * 0x9E3779B97F4A7C15ULL) >> 40) & mask;
    while (self->pend[j].used)
        j = (j + 1) & mask;
    self->pend[j] = *entry;
    self->pend[j].used = 1;
    self->pend_used++;
    return 0;
}

/* -- one call into its row ------------------------------------------------------------- */

static int hist_slot(int64_t n)
{
    if (n <= 0)
        return 0;
    int k = n == 1 ? 0 : 64 - __builtin_clzll((uint64_t)(n - 1)); /* (n-1).bit_length() */
    return (k > 64 ? 64 : k) + 1;
}

/* Count one returned-or-not call as SyscallEvent + aggregate._Tally.add_event would.
 * 1 counted, 0 leave the line to Python, -1 error. */
static int tally(Counter *self, int64_t pid, const char *name, Py_ssize_t name_len, int cls,
                 const char *args, const char *args_end, const Result *r)
{
    CallCounts c;
    if (!fc_call_counts(args, args_end, cls, r, &c))
        return 0;
    c.key.pid = pid;
    c.key.name_len = (uint8_t)name_len;
    memcpy(c.key.name, name, (size_t)name_len);
    Row *row = row_for(self, &c.key);
    if (row == NULL)
        return -1;
    if (!r->returned) {
        row->unreturned++;
        return 1;
    }
    int64_t bytes = row->bytes, req_bytes = row->req_bytes, iovs = row->iov_count;
    int64_t dur = row->dur_ns;
    if ((c.written > 0 && __builtin_add_overflow(bytes, c.written, &bytes))
        || (c.has_req && __builtin_add_overflow(req_bytes, c.req, &req_bytes))
        || (c.has_iovs && __builtin_add_overflow(iovs, c.iovs, &iovs))
        || (r->has_dur && __builtin_add_overflow(dur, r->dur_ns, &dur)))
        return 0; /* Python's ints do not overflow */
    row->calls++;
    row->errors += r->has_errno;
    if (c.written >= 0) {
        row->bytes = bytes;
        row->hist[hist_slot(c.written)]++;
    }
    if (c.has_req) {
        row->req_bytes = req_bytes;
        row->req_calls++;
    }
    row->iov_count = iovs;
    if (r->has_dur) {
        row->dur_ns = dur;
        row->timed++;
    }
    return 1;
}

/* -- lines ------------------------------------------------------------------------------ */

/* 1: the Python reader holds an unfinished call of this pid; -1: error */
static int python_holds(PyObject *py_pending, int64_t pid)
{
    if (PyDict_GET_SIZE(py_pending) == 0)
        return 0;
    PyObject *key = pid < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(pid);
    if (key == NULL)
        return -1;
    int held = PyDict_Contains(py_pending, key);
    Py_DECREF(key);
    return held;
}

static int hold_unfinished(Counter *self, const char *line, const char *name,
                           Py_ssize_t name_len, const char *body, const char *e, int64_t pid)
{
    const char *args_end = e - UNFINISHED_LEN;
    if (args_end > body && args_end[-1] == ' ')
        args_end--; /* strace puts one space before the marker */
    Pending entry = {.pid = pid, .line_len = e - line, .name_off = name - line,
                     .name_len = name_len, .args_off = body - line, .args_len = args_end - body};
    entry.line = acquire_line(self, entry.line_len, &entry.line_cap);
    if (entry.line == NULL)
        return -1;
    memcpy(entry.line, line, (size_t)entry.line_len);
    if (pending_insert(self, &entry) < 0) {
        PyMem_Free(entry.line);
        return -1;
    }
    return 1;
}

static int handle_call(Counter *self, const char *line, const char *p, const char *e,
                       int64_t pid, PyObject *py_pending)
{
    const char *name = p, *body;
    Result r;
    p = fc_read_name(p, e);
    Py_ssize_t name_len = p - name;
    if (name_len == 0 || name_len >= NAME_CAP || p >= e || *p != '(')
        return 0;
    int cls = fc_name_class(name, name_len);
    int held = python_holds(py_pending, pid);
    if (cls == N_PYTHON || held != 0)
        return held < 0 ? -1 : 0;
    if (pending_find(self, pid) != NULL || is_py_space(e[-1]))
        return 0; /* a start left unfinished (Python reports it), or a padded line */
    body = p + 1;
    if (e - body >= UNFINISHED_LEN && memcmp(e - UNFINISHED_LEN, UNFINISHED, UNFINISHED_LEN) == 0)
        return hold_unfinished(self, line, name, name_len, body, e, pid);
    if (e - body >= DETACHED_LEN && memcmp(e - DETACHED_LEN, DETACHED, DETACHED_LEN) == 0)
        return 0;
    if (!fc_split_result(body, e, &r))
        return 0;
    return tally(self, pid, name, name_len, cls, body, r.args_end, &r);
}

static int handle_resumed(Counter *self, const char *p, const char *e, int64_t pid,
                          PyObject *py_pending)
{
    Result r;
    if (e - p < 5 || memcmp(p, "<... ", 5) != 0)
        return 0;
    const char *name = p + 5, *q = fc_read_name(name, e);
    Py_ssize_t name_len = q - name;
    if (name_len == 0 || name_len >= NAME_CAP || e - q < 9 || memcmp(q, " resumed>", 9) != 0)
        return 0;
    q += 9;
    if (q < e && *q == ' ')
        q++;
    int cls = fc_name_class(name, name_len);
    int held = python_holds(py_pending, pid);
    if (cls == N_PYTHON || held != 0)
        return held < 0 ? -1 : 0;
    Pending *start = pending_find(self, pid);
    if (start == NULL || start->name_len != name_len
        || memcmp(start->line + start->name_off, name, (size_t)name_len) != 0)
        return 0; /* an orphan, or another call's start: Python reports them */
    if (!fc_split_result(q, e, &r))
        return 0;
    if (r.args_end - q > UNFINISHED_LEN && q[0] == ' '
        && memcmp(q + 1, UNFINISHED, UNFINISHED_LEN) == 0)
        q += UNFINISHED_LEN + 1; /* `<... x resumed>  <unfinished ...>) = ?` */
    Py_ssize_t len = start->args_len + (r.args_end - q);
    if (len > self->scratch_cap) {
        char *fresh = PyMem_Realloc(self->scratch, (size_t)len);
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->scratch = fresh;
        self->scratch_cap = len;
    }
    memcpy(self->scratch, start->line + start->args_off, (size_t)start->args_len);
    memcpy(self->scratch + start->args_len, q, (size_t)(r.args_end - q));
    int done = tally(self, pid, name, name_len, cls, self->scratch, self->scratch + len, &r);
    if (done == 1)
        pending_remove(self, start);
    return done;
}

/* 1 counted, 0 leave it to Python, -1 error */
static int handle_line(Counter *self, const char *s, const char *e, PyObject *py_pending)
{
    int64_t pid;
    if (s == e || e[-1] == '\r')
        return 0;
    if (e - s >= 3 && s[0] == ' ' && s[1] == '>' && s[2] == ' ')
        return 1; /* a -k stack frame: parsed, counts nothing */
    if (!fc_ascii_only(s, e))
        return 0; /* Python's \d, \s and str.strip() know more than ASCII */
    const char *p = fc_read_prefix(s, e, &pid);
    if (p == NULL || p >= e)
        return 0;
    if (self->has_fixed_pid)
        pid = self->fixed_pid;
    if (*p == '<')
        return handle_resumed(self, p, e, pid, py_pending);
    return handle_call(self, s, p, e, pid, py_pending);
}

/* -- the Counter type ------------------------------------------------------------------- */

static PyObject *Counter_scan(Counter *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, end, lines = 0;
    PyObject *py_pending;
    if (!PyArg_ParseTuple(args, "y*nnO!", &view, &pos, &end, &PyDict_Type, &py_pending))
        return NULL;
    if (pos < 0 || end > view.len || pos > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: need 0 <= pos <= end <= len(buf)");
        return NULL;
    }
    const char *base = view.buf, *p = base + pos, *stop = base + end;
    /* A line holding `strace: Process ` goes to Python, which mends it. Searched ahead in
     * runs of whole lines that double, so that a scan stopping early reads little. */
    const char *searched = p, *injected = NULL;
    Py_ssize_t window = 1 << 14;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL)
            break;
        if (nl >= searched) {
            const char *run_end = stop - p > window ? p + window : stop;
            const char *run_nl = memchr(run_end - 1, '\n', (size_t)(stop - run_end + 1));
            searched = run_nl != NULL ? run_nl + 1 : stop;
            injected = fc_find(p, searched, INJECTED, INJECTED_LEN, 8); /* the 'P' */
            window = window < (1 << 22) ? window * 2 : window;
        }
        if (injected != NULL && injected < nl)
            break;
        int done = handle_line(self, p, nl, py_pending);
        if (done < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (done == 0)
            break;
        lines++;
        p = nl + 1;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", (Py_ssize_t)(p - base), lines);
}

static PyObject *Counter_take_pending(Counter *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->pend_cap; i++) {
        Pending *slot = &self->pend[i];
        if (!slot->used)
            continue;
        PyObject *line = PyBytes_FromStringAndSize(slot->line, slot->line_len);
        if (line == NULL || PyList_Append(out, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(line);
    }
    for (Py_ssize_t i = 0; i < self->pend_cap; i++) {
        if (self->pend[i].used) {
            release_line(self, &self->pend[i]);
            self->pend[i].used = 0;
        }
    }
    self->pend_used = 0;
    return out;
}

static PyObject *row_tuple(const Row *row)
{
    const Key *k = &row->key;
    PyObject *hist = PyDict_New(); /* slot -> count, the slots in use only */
    if (hist == NULL)
        return NULL;
    for (int i = 0; i < HIST_SLOTS; i++) {
        if (row->hist[i] == 0)
            continue;
        PyObject *slot = PyLong_FromLong(i), *n = PyLong_FromLongLong(row->hist[i]);
        int failed = slot == NULL || n == NULL || PyDict_SetItem(hist, slot, n) < 0;
        Py_XDECREF(slot);
        Py_XDECREF(n);
        if (failed) {
            Py_DECREF(hist);
            return NULL;
        }
    }
    PyObject *pid = k->pid < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(k->pid);
    PyObject *proto = k->proto_len ? PyUnicode_FromStringAndSize(k->proto, k->proto_len)
                                   : Py_NewRef(Py_None);
    const char *kind = KIND_NAMES[k->kind];
    PyObject *out = NULL;
    if (pid != NULL && proto != NULL)
        out = Py_BuildValue("(Os#zOLLLLLLLLLO)", pid, k->name, (Py_ssize_t)k->name_len, kind,
                            proto, row->calls, row->errors, row->bytes, row->dur_ns,
                            row->timed, row->unreturned, row->req_bytes, row->req_calls,
                            row->iov_count, hist);
    Py_XDECREF(pid);
    Py_XDECREF(proto);
    Py_DECREF(hist);
    return out;
}

static PyObject *Counter_rows(Counter *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->rows_cap; i++) {
        if (self->rows[i] == NULL)
            continue;
        PyObject *t = row_tuple(self->rows[i]);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static int Counter_init(Counter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fixed_pid", NULL};
    PyObject *fixed = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &fixed))
        return -1;
    self->has_fixed_pid = fixed != Py_None;
    if (self->has_fixed_pid) {
        self->fixed_pid = PyLong_AsLongLong(fixed);
        if (self->fixed_pid == -1 && PyErr_Occurred())
            return -1;
        if (self->fixed_pid < 0) {
            PyErr_SetString(PyExc_ValueError, "fixed_pid must not be negative");
            return -1;
        }
    }
    return 0;
}

static void Counter_dealloc(Counter *self)
{
    for (Py_ssize_t i = 0; i < self->rows_cap; i++)
        PyMem_Free(self->rows[i]);
    PyMem_Free(self->rows);
    for (Py_ssize_t i = 0; i < self->pend_cap; i++)
        if (self->pend[i].used)
            PyMem_Free(self->pend[i].line);
    PyMem_Free(self->pend);
    for (int i = 0; i < self->spares; i++)
        PyMem_Free(self->spare[i].line);
    PyMem_Free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Counter_pending(Counter *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->pend_used);
}

static PyMethodDef Counter_methods[] = {
    {"scan", (PyCFunction)Counter_scan, METH_VARARGS,
     "scan(buf, pos, end, py_pending) -> (offset, lines): count lines of buf[pos:end] up "
     "to the first one left to the Python reader (or the last newline)"},
    {"take_pending", (PyCFunction)Counter_take_pending, METH_NOARGS,
     "the unfinished call lines held here, as bytes; they are forgotten here"},
    {"rows", (PyCFunction)Counter_rows, METH_NOARGS,
     "[(pid, name, kind, proto, calls, errors, bytes, dur_ns, timed, unreturned, "
     "requested_bytes, requested_calls, iov_count, {histogram slot: count}), ...]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Counter_getset[] = {
    {"pending", (getter)Counter_pending, NULL, "unfinished calls held here", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "strace_parsers._fastcount.Counter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counts the call lines of one strace log (see the module's docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_methods = Counter_methods,
    .tp_getset = Counter_getset,
};

static struct PyModuleDef fastcount_module = {
    PyModuleDef_HEAD_INIT, "_fastcount",
    "The counting path of strace_parsers in C (strace_parsers/_fastcount.c).", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcount(void)
{
    if (PyType_Ready(&CounterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastcount_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
