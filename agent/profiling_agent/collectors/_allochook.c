/* The alloc-sampler's allocation hook (collectors/alloc_sampler.py drives it).
 *
 * Wraps CPython's PYMEM_DOMAIN_MEM and PYMEM_DOMAIN_OBJ allocators (PyMem_SetAllocator: every
 * object and buffer Python allocates, pymalloc's small objects included) and samples
 * allocations by bytes: the sample points form a Poisson process over allocated bytes (random
 * exponential gaps, mean `mean_bytes`), an allocation holding one or more points is sampled, and
 * it stands for size / P(sampled) bytes and 1 / P(sampled) allocations, so totals are unbiased.
 * A sampled allocation keeps its thread's Python stack (code objects, leaf first), its thread,
 * and the labels its code ran under (the profiling_labels ContextVar, read in the allocating
 * thread, so asyncio tasks keep theirs), and stays in a table of live blocks until it is freed.
 *
 * Both domains are only ever called with the GIL held (standard builds), so the tables need no
 * lock; the hook never releases the GIL. Inside the hook nothing may run Python code or start a
 * garbage collection in the middle of the interpreter's own allocation: the stack is read with
 * the collector disabled, the error indicator saved and restored, and a guard naming the busy
 * thread lets allocations made while sampling (frame objects that 3.11+ creates on demand) pass
 * through.
 * References are only released outside the hook, in snapshot() and stop() (read_labels drops
 * its copy of the context, which holds nothing alone). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef Py_GIL_DISABLED
#error "the allocation hook relies on the GIL: free-threaded builds are not supported"
#endif

#if PY_VERSION_HEX >= 0x030D0000
#define CURRENT_TSTATE() PyThreadState_GetUnchecked()
#else
#define CURRENT_TSTATE() _PyThreadState_UncheckedGet()
#endif

#define MAX_FRAMES_LIMIT 512

typedef struct record {
    void *ptr;             /* the block, while live */
    double bytes;          /* size / P(sampled) */
    double count;          /* 1 / P(sampled) */
    unsigned long thread;  /* PyThread_get_thread_ident() of the allocating thread */
    PyObject *labels;      /* strong reference, or NULL for none */
    int live;              /* in the live table */
    int recent;            /* in the recent list: not yet returned by snapshot() */
    int nframes;
    PyObject *codes[];     /* strong references, leaf first */
} record_t;

typedef struct {
    record_t **items;
    size_t len, cap;
} list_t;

static PyMemAllocatorEx original_mem, original_obj;
static int installed;       /* our functions are the domains' allocators */
static int active;          /* sampling (installed and not stopped) */
/* The thread that is sampling, snapshotting or releasing records: its own allocations meanwhile
 * pass through unsampled. Compared only when an allocation reaches a sample point, so the path
 * every allocation takes reads no thread-local (a TLS resolver call, from a shared object). It
 * names the thread rather than being a flag: a snapshot's garbage collection can run finalizers
 * that let other threads take the GIL, and those go on being sampled (a flag lost a third of a
 * busy thread's sampled bytes that way). */
static PyThreadState *busy_thread;

static double mean_bytes = 512.0 * 1024.0;
static int max_frames = 128;
static size_t max_records = 100000;  /* live or not yet reported, each */
static PyObject *labels_var;         /* the ContextVar of profiling_labels, or NULL */
static int64_t countdown;            /* bytes until the next sample point */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static unsigned long long dropped;   /* sampled allocations not recorded (caps, no memory) */
static long long sampling_ns;        /* CPU the allocating threads spent recording samples */

static list_t recent;  /* sampled since the last snapshot (live or freed) */
static list_t dead;    /* freed after they were reported: released at the next snapshot */
static record_t **slots;  /* the live table: open addressing on the block's address */
static size_t nslots, nlive;
/* A filter in front of the table: a bit per address hash, set while a live sampled block has that
 * hash (a count per bit says how many). Nearly every free is of a block never sampled, and one
 * bit test (an 8 KiB table that stays in cache) says so: probing the table instead cost about 4 %
 * of a json-heavy loop with 200 live records (1.08-1.10x against 1.03-1.05x with none). A bit
 * is cleared when its last block is freed: pymalloc hands the same few addresses out again and
 * again, and a stale bit on one of them sent every free of it to the table until the next
 * snapshot. A count that saturates keeps its bit set for good (a slower path, never a miss). */
#define FILTER_BITS (1u << 16)
static uint64_t filter[FILTER_BITS / 64];
static uint16_t filter_counts[FILTER_BITS];

static inline size_t filter_bit(const void *ptr)
{
    uintptr_t address = (uintptr_t)ptr;
    return (size_t)((address >> 4) ^ (address >> 20)) & (FILTER_BITS - 1);
}

static void filter_add(const void *ptr)
{
    size_t bit = filter_bit(ptr);
    if (filter_counts[bit] < UINT16_MAX)
        filter_counts[bit]++;
    filter[bit >> 6] |= 1ULL << (bit & 63);
}

static void filter_remove(const void *ptr)
{
    size_t bit = filter_bit(ptr);
    if (filter_counts[bit] == UINT16_MAX)
        return;
    if (--filter_counts[bit] == 0)
        filter[bit >> 6] &= ~(1ULL << (bit & 63));
}

static inline int filter_may_hold(const void *ptr)
{
    size_t bit = filter_bit(ptr);
    return (int)((filter[bit >> 6] >> (bit & 63)) & 1);
}

/* ---- sampling ------------------------------------------------------------------------- */

static double uniform01(void)  /* xorshift64*: in [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t next_gap(void)
{
    double gap = -log(1.0 - uniform01()) * mean_bytes;
    if (gap < 1.0)
        gap = 1.0;
    if (gap > 1e15)
        gap = 1e15;
    return (int64_t)gap;
}

/* ---- the live table -------------------------------------------------------------------- */

static size_t slot_of(const void *ptr)
{
    uint64_t h = (uint64_t)(uintptr_t)ptr;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h & (nslots - 1);
}

static void table_put(record_t *record)
{
    size_t i = slot_of(record->ptr);
    while (slots[i] != NULL)
        i = (i + 1) & (nslots - 1);
    slots[i] = record;
}

static int table_grow(void)
{
    size_t old_n = nslots;
    record_t **old = slots;
    size_t n = old_n ? old_n * 2 : 1024;
    record_t **grown = calloc(n, sizeof *grown);
    if (grown == NULL)
        return -1;
    slots = grown;
    nslots = n;
    for (size_t i = 0; i < old_n; i++)
        if (old[i] != NULL)
            table_put(old[i]);
    free(old);
    return 0;
}

static record_t *table_take(const void *ptr)
{
    size_t mask = nslots - 1, i = slot_of(ptr);
    while (slots[i] != NULL && slots[i]->ptr != ptr)
        i = (i + 1) & mask;
    record_t *found = slots[i];
    if (found == NULL)
        return NULL;
    /* backward-shift deletion: no tombstones, probes stay short */
    size_t j = i;
    for (;;) {
        slots[i] = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (slots[j] == NULL)
                return found;
            size_t home = slot_of(slots[j]->ptr);
            int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
                break;
        }
        slots[i] = slots[j];
        i = j;
    }
}

static int list_push(list_t *list, record_t *record)
{
    if (list->len == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 256;
        record_t **grown = realloc(list->items, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->len++] = record;
    return 0;
}

static void release(record_t *record)  /* outside the hook only: may run deallocators */
{
    for (int i = 0; i < record->nframes; i++)
        Py_DECREF(record->codes[i]);
    Py_XDECREF(record->labels);
    free(record);
}

/* ---- the hook ---------------------------------------------------------------------------- */

static int read_stack(PyThreadState *tstate, PyObject **codes)
{
    int n = 0;
    PyFrameObject *frame = PyThreadState_GetFrame(tstate);
    while (frame != NULL && n < max_frames) {
        codes[n++] = (PyObject *)PyFrame_GetCode(frame);
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);  /* its interpreter frame still holds it: never the last reference */
        frame = back;
    }
    Py_XDECREF(frame);
    return n;
}

/* The labels ContextVar's value in the running context (a new reference, or NULL), looked up in
 * a copy of that context. PyContextVar_Get would do, but it caches what it finds in the variable,
 * and the allocation being sampled can be one that ContextVar.reset() makes while it deletes the
 * variable: reset clears that cache before the allocation and not after, so the labels a block
 * had set stayed visible to its thread after the block ended, through a borrowed pointer that
 * became dangling once they were freed (a segfault). The copy shares the context's variables;
 * dropping it here releases only its own references, never the last one to anything else. */
static PyObject *read_labels(void)
{
    PyObject *context = PyContext_CopyCurrent();
    if (context == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *labels = NULL;
    int found = PySequence_Contains(context, labels_var);  /* no KeyError made for a miss */
    if (found == 1)
        labels = PyObject_GetItem(context, labels_var);
    if (labels == NULL)
        PyErr_Clear();
    Py_DECREF(context);
    return labels;
}

static long long thread_cpu_ns(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0)
        return 0;
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static void record_sample(void *ptr, size_t size);

static void sample(void *ptr, size_t size)  /* timed: its cost is the agent's, in the host's thread */
{
    long long started = thread_cpu_ns();
    record_sample(ptr, size);
    sampling_ns += thread_cpu_ns() - started;
}

static void record_sample(void *ptr, size_t size)
{
    if (recent.len >= max_records || nlive >= max_records) {
        dropped++;
        return;
    }
    if ((nlive + 1) * 2 > nslots && table_grow() < 0) {
        dropped++;
        return;
    }
    PyThreadState *was_busy = busy_thread;
    busy_thread = CURRENT_TSTATE();
    PyObject *codes[MAX_FRAMES_LIMIT];
    int n = 0;
    PyObject *labels = NULL;
    PyThreadState *tstate = CURRENT_TSTATE();
    if (tstate != NULL) {  /* always set where the GIL is held; an extension may be wrong */
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *error = PyErr_GetRaisedException();
#else
        PyObject *error_type, *error_value, *error_tb;
        PyErr_Fetch(&error_type, &error_value, &error_tb);
#endif
        int gc_was_enabled = PyGC_Disable();
        n = read_stack(tstate, codes);
        if (labels_var != NULL)
            labels = read_labels();
        if (labels != NULL && (!PyTuple_Check(labels) || PyTuple_GET_SIZE(labels) == 0))
            Py_CLEAR(labels);  /* no labels: NULL */
        if (gc_was_enabled)
            PyGC_Enable();
#if PY_VERSION_HEX >= 0x030C0000
        PyErr_SetRaisedException(error);
#else
        PyErr_Restore(error_type, error_value, error_tb);
#endif
    }

    record_t *record = malloc(sizeof *record + (size_t)n * sizeof(PyObject *));
    if (record == NULL || list_push(&recent, record) < 0) {
        /* the references are dropped later, never inside the hook: a few leak instead */
        free(record);
        dropped++;
        busy_thread = was_busy;
        return;
    }
    double p = -expm1(-(double)size / mean_bytes);  /* P(at least one point in size bytes) */
    if (p <= 0.0)
        p = 1.0 / mean_bytes;
    record->ptr = ptr;
    record->bytes = (double)size / p;
    record->count = 1.0 / p;
    record->thread = PyThread_get_thread_ident();
    record->labels = labels;
    record->nframes = n;
    memcpy(record->codes, codes, (size_t)n * sizeof(PyObject *));
    record->recent = 1;
    record->live = 1;
    table_put(record);
    filter_add(ptr);
    nlive++;
    busy_thread = was_busy;
}

/* The hooks' fast paths do one subtraction (malloc) or one filter test (free) and then
 * tail-call the original allocator, with everything else out of line: inlined, the slow paths
 * made every call save and restore registers, which was over half of the hook's instructions
 * (callgrind, the overhead benchmark's workload). */
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define COLD __attribute__((noinline, cold))

/* The countdown ran out within this allocation: it holds a sample point. */
static COLD void sample_point(void *ptr, size_t size)
{
    countdown = next_gap();
    if (ptr != NULL && active && busy_thread != CURRENT_TSTATE())
        sample(ptr, size);
}

/* The filter says the block may be a sampled one. */
static COLD void sampled_block_freed(void *ptr)
{
    if (nlive == 0 || ptr == NULL)
        return;
    record_t *record = table_take(ptr);
    if (record == NULL)
        return;
    filter_remove(ptr);
    nlive--;
    record->live = 0;
    record->ptr = NULL;
    if (!record->recent && list_push(&dead, record) < 0)
        dropped++;  /* cannot be queued for release: it leaks, harmless */
}

static inline int counts_down(size_t size)  /* false when the countdown runs out */
{
    countdown -= (int64_t)size;
    return LIKELY(countdown > 0);
}

static COLD void *sampled_malloc(PyMemAllocatorEx *original, size_t size)
{
    void *ptr = original->malloc(original->ctx, size);
    sample_point(ptr, size);
    return ptr;
}

static void *hook_malloc(void *ctx, size_t size)
{
    PyMemAllocatorEx *original = ctx;
    if (counts_down(size))
        return original->malloc(original->ctx, size);
    return sampled_malloc(original, size);
}

static COLD void *sampled_calloc(PyMemAllocatorEx *original, size_t nelem, size_t elsize)
{
    void *ptr = original->calloc(original->ctx, nelem, elsize);
    sample_point(ptr, nelem * elsize);
    return ptr;
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *original = ctx;
    if (counts_down(nelem * elsize))
        return original->calloc(original->ctx, nelem, elsize);
    return sampled_calloc(original, nelem, elsize);
}

static COLD void *tracked_realloc(PyMemAllocatorEx *original, void *old, size_t size, int sampled)
{
    void *ptr = original->realloc(original->ctx, old, size);
    if (ptr == NULL)  /* on failure the old block stays as it was */
        return ptr;
    sampled_block_freed(old);
    if (sampled)
        sample_point(ptr, size);
    return ptr;
}

static void *hook_realloc(void *ctx, void *old, size_t size)
{
    PyMemAllocatorEx *original = ctx;
    int sampled = !counts_down(size);
    if (LIKELY(!sampled && !filter_may_hold(old)))
        return original->realloc(original->ctx, old, size);
    return tracked_realloc(original, old, size, sampled);
}

static COLD void free_sampled_block(PyMemAllocatorEx *original, void *ptr)
{
    sampled_block_freed(ptr);
    original->free(original->ctx, ptr);
}

static void hook_free(void *ctx, void *ptr)
{
    PyMemAllocatorEx *original = ctx;
    if (LIKELY(!filter_may_hold(ptr))) {
        original->free(original->ctx, ptr);
        return;
    }
    free_sampled_block(original, ptr);
}

/* ---- the module ---------------------------------------------------------------------------- */

static int ours(PyMemAllocatorDomain domain, PyMemAllocatorEx *original)
{
    PyMemAllocatorEx now;
    PyMem_GetAllocator(domain, &now);
    return now.malloc == hook_malloc && now.ctx == original;
}

static void release_all(void)
{
    /* detached first: the releases free blocks, and the hook must find no table to update */
    record_t **table = slots;
    size_t n = nslots;
    list_t lists[2] = {recent, dead};
    slots = NULL;
    nslots = nlive = 0;
    memset(filter, 0, sizeof filter);
    memset(filter_counts, 0, sizeof filter_counts);
    recent = (list_t){0};
    dead = (list_t){0};
    PyThreadState *was_busy = busy_thread;
    busy_thread = CURRENT_TSTATE();
    for (size_t i = 0; i < n; i++)
        if (table[i] != NULL && !table[i]->recent)
            release(table[i]);  /* those in `recent` are released with it */
    free(table);
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l].len; i++)
            release(lists[l].items[i]);
        free(lists[l].items);
    }
    busy_thread = was_busy;
}

static PyObject *start(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"mean_bytes", "max_frames", "max_records", "labels_var", NULL};
    double mean;
    int frames;
    Py_ssize_t records;
    PyObject *var = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "dinO", keywords, &mean, &frames, &records,
                                     &var))
        return NULL;
    if (!(mean >= 1.0) || frames < 1 || frames > MAX_FRAMES_LIMIT || records < 1) {
        PyErr_SetString(PyExc_ValueError, "mean_bytes >= 1, 1 <= max_frames <= 512, "
                                          "max_records >= 1");
        return NULL;
    }
    if (var != Py_None && !PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "labels_var must be a ContextVar or None");
        return NULL;
    }
    if (active) {
        PyErr_SetString(PyExc_RuntimeError, "the allocation hook is already sampling");
        return NULL;
    }
    mean_bytes = mean;
    max_frames = frames;
    max_records = (size_t)records;
    Py_XINCREF(var == Py_None ? NULL : var);
    Py_XSETREF(labels_var, var == Py_None ? NULL : var);
    rng_state ^= (uint64_t)(uintptr_t)&frames ^ (uint64_t)PyThread_get_thread_ident();
    if (rng_state == 0)
        rng_state = 0x9E3779B97F4A7C15ULL;
    countdown = next_gap();
    dropped = 0;
    sampling_ns = 0;
    if (!installed) {
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &original_mem);
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &original_obj);
        PyMemAllocatorEx mem = {&original_mem, hook_malloc, hook_calloc, hook_realloc, hook_free};
        PyMemAllocatorEx obj = {&original_obj, hook_malloc, hook_calloc, hook_realloc, hook_free};
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &obj);
        installed = 1;
    }
    active = 1;
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *unused)
{
    active = 0;
    /* another hook installed over ours (tracemalloc, say) wraps ours: ours then stays in
     * place, passing every call through, rather than cutting the other one out */
    if (installed && ours(PYMEM_DOMAIN_MEM, &original_mem) && ours(PYMEM_DOMAIN_OBJ, &original_obj)) {
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &original_mem);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &original_obj);
        installed = 0;
    }
    release_all();
    Py_CLEAR(labels_var);
    return PyBool_FromLong(!installed);
}

static PyObject *record_tuple(record_t *record)
{
    PyObject *codes = PyTuple_New(record->nframes);
    if (codes == NULL)
        return NULL;
    for (int i = 0; i < record->nframes; i++) {  /* root first, as profiles list stacks */
        PyObject *code = record->codes[record->nframes - 1 - i];
        Py_INCREF(code);
        PyTuple_SET_ITEM(codes, i, code);
    }
    return Py_BuildValue("(NddkO)", codes, record->bytes, record->count, record->thread,
                         record->labels ? record->labels : Py_None);
}

static PyObject *records_list(record_t **records, size_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *item = record_tuple(records[i]);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *snapshot(PyObject *self, PyObject *args)
{
    static int busy;
    int want_allocations, want_live;
    if (!PyArg_ParseTuple(args, "pp", &want_allocations, &want_live))
        return NULL;
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "a snapshot is already being taken");
        return NULL;
    }
    busy = 1;
    /* the snapshot's own allocations are not sampled (frees are still tracked) */
    PyThreadState *was_busy = busy_thread;
    busy_thread = CURRENT_TSTATE();
    /* taken in one go, with no Python code run: what happens while the lists are built (a
     * garbage collection may let other threads run) goes to the next snapshot */
    list_t taken = recent, gone = dead;
    recent = (list_t){0};
    dead = (list_t){0};
    size_t n_live = 0;
    record_t **live = malloc((nlive ? nlive : 1) * sizeof *live);
    if (live != NULL)
        for (size_t i = 0; i < nslots; i++)
            if (slots[i] != NULL)
                live[n_live++] = slots[i];
    unsigned long long lost = dropped;
    long long spent = sampling_ns;
    dropped = 0;
    sampling_ns = 0;

    PyObject *result = NULL;
    if (live == NULL) {
        PyErr_NoMemory();
    }
    else {
        /* each list only when asked (the records are reported either way): the live one can
         * hold every record, and only memory profiles read it, only alloc ones the other */
        PyObject *allocations = want_allocations ? records_list(taken.items, taken.len)
                                                 : Py_NewRef(Py_None);
        PyObject *still_live = NULL;
        if (allocations != NULL)
            still_live = want_live ? records_list(live, n_live) : Py_NewRef(Py_None);
        if (still_live != NULL)
            result = Py_BuildValue("(NNKL)", allocations, still_live, lost, spent);
        else
            Py_XDECREF(allocations);
    }
    free(live);
    /* the records snapshot returned are no longer recent; the freed ones are released */
    for (size_t i = 0; i < taken.len; i++) {
        record_t *record = taken.items[i];
        record->recent = 0;
        if (!record->live)
            release(record);
    }
    for (size_t i = 0; i < gone.len; i++)
        release(gone.items[i]);
    free(taken.items);
    free(gone.items);
    busy_thread = was_busy;
    busy = 0;
    return result;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_VARARGS | METH_KEYWORDS,
     "start(mean_bytes, max_frames, max_records, labels_var): install the hook (if it is not)"
     " and sample allocations every mean_bytes bytes on average."},
    {"stop", stop, METH_NOARGS,
     "stop() -> bool: stop sampling and forget every record; True when the hook was removed"
     " (False: another hook wraps ours, which then passes every call through)."},
    {"snapshot", snapshot, METH_VARARGS,
     "snapshot(want_allocations, want_live) -> (allocations, live, dropped, sampling_ns): the"
     " sampled allocations since the last snapshot and those still live (each None unless"
     " wanted), each (codes root first, bytes, count, thread ident, labels or None), how many"
     " sampled allocations the caps left out, and the CPU the allocating threads spent"
     " recording samples since the last snapshot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_allochook",
    "Sampled allocation hook of the alloc-sampler (see collectors/alloc_sampler.py).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__allochook(void)
{
    return PyModule_Create(&module);
}
