/* safetensors: reader (mmap, cJSON header, every dtype, shape and offset
 * checked against the file before any tensor byte is touched) and float32
 * writer (temporary file + fsync + rename). Tested by tests/test_safetensors.c
 * (round trips, hand-made F16/BF16 files, one file per malformed case) and
 * fuzzed by tests/fuzz_safetensors.c (st_parse on arbitrary bytes). */
#include "safetensors.h"
#include "fileio.h"
#include "err.h"
#include "half.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, as the reference reader */
#define ST_MAX_INT 9007199254740992.0        /* 2^53: larger JSON numbers are inexact */

/* ---- messages ---------------------------------------------------------- */

/* err_set(code, "'label': " fmt...), with control characters (a newline in a
 * tensor name or path) replaced by '?' so the message stays on one line. */
static int st_fail(int code, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int st_fail(int code, const char *label, const char *fmt, ...) {
    char body[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    char msg[1024];
    snprintf(msg, sizeof msg, "'%s': %s", label, body);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return err_set(code, "%s", msg);
}

/* ---- dtypes ------------------------------------------------------------- */

const char *st_dtype_name(DType d) {
    switch (d) {
    case DTYPE_F32: return "F32";
    case DTYPE_F16: return "F16";
    case DTYPE_BF16: return "BF16";
    }
    return "?";
}

/* The dtypes safetensors knows that unetlab computes nothing with, and their
 * bits per element: a file may hold them (SD 1.x single files carry an I64
 * position_ids, some an EMA step counter); they are validated like the rest
 * and kept apart (st_other_dtype), never converted. */
static const struct {
    const char *name;
    int bits;
} OTHER[] = {
    {"F64", 64}, {"I64", 64}, {"I32", 32}, {"I16", 16}, {"I8", 8}, {"U64", 64}, {"U32", 32}, {"U16", 16}, {"U8", 8},
    {"BOOL", 8}, {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"F4", 4}, {"C64", 64},
};

/* 0 and *d set for a supported dtype; 1 and *other (an OTHER index) for a known
 * one unetlab does not compute with; -1 unknown. */
static int st_dtype_parse(const char *s, DType *d, int *other) {
    if (!strcmp(s, "F32")) { *d = DTYPE_F32; return 0; }
    if (!strcmp(s, "F16")) { *d = DTYPE_F16; return 0; }
    if (!strcmp(s, "BF16")) { *d = DTYPE_BF16; return 0; }
    for (int i = 0; i < (int)(sizeof OTHER / sizeof *OTHER); i++)
        if (!strcmp(s, OTHER[i].name)) { *other = i; return 1; }
    return -1;
}

/* ---- open / parse / close ---------------------------------------------- */

void st_close(SafeTensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int i = 0; i < st->n_other; i++) free(st->other[i].name);
    free(st->t);
    free(st->other);
    free(st->path);
    if (st->map) munmap(st->map, st->map_size);
    memset(st, 0, sizeof *st);
}

/* A JSON number that is an exact integer in [0, 2^53]; stores it in *v. */
static int json_uint(const cJSON *j, int64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT)) return 0; /* also rejects nan */
    int64_t i = (int64_t)d;
    if ((double)i != d) return 0;
    *v = i;
    return 1;
}

/* "[2, 3]" into buf, for messages. */
static const char *shape_str(const StTensor *t, char *buf, size_t cap) {
    size_t k = 0;
    k += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Fills t (name already set) from the JSON entry j; data_begin/data_size
 * describe the data section. Returns 0 or the error code. */
static int parse_entry(StTensor *t, const cJSON *j, const unsigned char *data_begin,
                       size_t data_size, const char *label, int errcode) {
    const char *name = t->name;
    if (!cJSON_IsObject(j))
        return st_fail(errcode, label, "tensor '%s': entry is not a JSON object", name);

    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return st_fail(errcode, label, "tensor '%s': missing or non-string \"dtype\"", name);
    int other = -1, k = st_dtype_parse(jd->valuestring, &t->dtype, &other);
    t->other = other >= 0 ? OTHER[other].name : NULL;
    if (k < 0)
        return st_fail(errcode, label, "tensor '%s': unknown dtype '%.40s'", name, jd->valuestring);

    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    if (!cJSON_IsArray(js))
        return st_fail(errcode, label, "tensor '%s': missing or non-array \"shape\"", name);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > ST_MAX_DIMS)
        return st_fail(errcode, label, "tensor '%s': shape has %d dims (at most %d)", name, ndim,
                       ST_MAX_DIMS);
    t->ndim = 0;
    int64_t numel = 1;
    int zero = 0, overflow = 0;
    for (const cJSON *e = js->child; e; e = e->next) {
        int64_t v;
        if (!json_uint(e, &v)) {
            if (cJSON_IsNumber(e))
                return st_fail(errcode, label,
                               "tensor '%s': shape entry %g is not a non-negative integer", name,
                               e->valuedouble);
            return st_fail(errcode, label, "tensor '%s': shape entry is not a number", name);
        }
        t->shape[t->ndim++] = v;
        if (v == 0) zero = 1;
        else if (numel > INT64_MAX / v) overflow = 1;
        else numel *= v;
    }
    if (zero) numel = 0;
    else if (overflow || numel > INT64_MAX / 4)
        return st_fail(errcode, label, "tensor '%s': shape element count overflows", name);
    t->numel = numel;
    t->nbytes = other >= 0 ? (size_t)((numel / 8) * OTHER[other].bits + ((numel % 8) * OTHER[other].bits + 7) / 8)
                           : (size_t)numel * dtype_size(t->dtype);

    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    int64_t b, e;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        !json_uint(jo->child, &b) || !json_uint(jo->child->next, &e))
        return st_fail(errcode, label,
                       "tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers",
                       name);
    if (b > e || (uint64_t)e > (uint64_t)data_size)
        return st_fail(errcode, label,
                       "tensor '%s': data_offsets [%" PRId64 ", %" PRId64
                       "] out of range (data section is %zu bytes)",
                       name, b, e, data_size);
    if ((uint64_t)(e - b) != (uint64_t)t->nbytes) {
        char sb[200];
        return st_fail(errcode, label,
                       "tensor '%s': shape %s dtype %s needs %zu bytes but data_offsets give %" PRId64,
                       name, shape_str(t, sb, sizeof sb), t->other ? t->other : st_dtype_name(t->dtype), t->nbytes, e - b);
    }
    t->data = data_begin + b;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* Byte range of one tensor, for the overlap check. */
typedef struct { uint64_t b, e; int idx; } Range;

static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return 0;
}

/* The body of st_parse; *st is zeroed and st->path set on entry. On failure
 * the caller frees what was filled in. */
static int parse(SafeTensors *st, const unsigned char *buf, size_t size, const char *label,
                 int errcode) {
    if (size < 8)
        return st_fail(errcode, label, "truncated: %zu bytes, shorter than the 8-byte header length",
                       size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > (uint64_t)(size - 8))
        return st_fail(errcode, label, "header length %" PRIu64 " larger than the file (%zu bytes)",
                       n, size);
    if (n > ST_MAX_HEADER)
        return st_fail(errcode, label, "header length %" PRIu64 " exceeds the %u byte limit", n,
                       ST_MAX_HEADER);
    if (n == 0) return st_fail(errcode, label, "header is not JSON (empty)");

    /* cJSON gets a NUL-terminated copy, so it can never run past the header. */
    size_t hn = (size_t)n;
    char *hdr = xmalloc(hn + 1);
    memcpy(hdr, buf + 8, hn);
    hdr[hn] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hn, &end, 0);
    if (!root) {
        free(hdr);
        return st_fail(errcode, label, "header is not JSON");
    }
    if (end) /* only whitespace may follow the object (padding) */
        for (; end < hdr + hn; end++)
            if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
                cJSON_Delete(root);
                free(hdr);
                return st_fail(errcode, label, "header is not JSON (bytes after the object)");
            }
    free(hdr);
    if (!cJSON_IsObject(root)) {
        const char *kind = cJSON_IsArray(root) ? "an array" : "a scalar";
        cJSON_Delete(root);
        return st_fail(errcode, label, "header is not JSON: want an object, got %s", kind);
    }

    const unsigned char *data = buf + 8 + hn;
    size_t data_size = size - 8 - hn;
    int count = 0;
    for (const cJSON *j = root->child; j; j = j->next)
        if (!j->string || strcmp(j->string, "__metadata__")) count++;
    st->t = xcalloc((size_t)count, sizeof *st->t);
    int rc = 0;
    for (const cJSON *j = root->child; j && !rc; j = j->next) {
        const char *key = j->string ? j->string : "";
        if (!strcmp(key, "__metadata__")) {
            if (!cJSON_IsObject(j))
                rc = st_fail(errcode, label, "\"__metadata__\" is not a JSON object");
            continue;
        }
        StTensor *t = &st->t[st->n++];
        t->name = xstrdup(key);
        rc = parse_entry(t, j, data, data_size, label, errcode);
    }
    cJSON_Delete(root);
    if (rc) return rc;

    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_tensor_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->t[i - 1].name, st->t[i].name))
            return st_fail(errcode, label, "duplicate tensor '%s'", st->t[i].name);

    /* Overlap: sorted by begin, every non-empty range must start at or after
     * the end of the last non-empty one before it. */
    Range *ranges = xcalloc((size_t)st->n, sizeof *ranges);
    for (int i = 0; i < st->n; i++) {
        uint64_t b = (uint64_t)((const unsigned char *)st->t[i].data - data);
        ranges[i] = (Range){b, b + st->t[i].nbytes, i};
    }
    qsort(ranges, (size_t)st->n, sizeof *ranges, cmp_range);
    int last = -1;
    for (int i = 0; i < st->n && !rc; i++) {
        if (ranges[i].b == ranges[i].e) continue;
        if (last >= 0 && ranges[i].b < ranges[last].e)
            rc = st_fail(errcode, label, "tensors '%s' and '%s' overlap",
                         st->t[ranges[last].idx].name, st->t[ranges[i].idx].name);
        last = i;
    }
    free(ranges);
    /* the tensors of other dtypes leave the list: nothing can find and convert them */
    int kept = 0;
    for (int i = 0; i < st->n && !rc; i++) {
        if (!st->t[i].other) { st->t[kept++] = st->t[i]; continue; }
        st->other = xrealloc(st->other, (size_t)(st->n_other + 1) * sizeof *st->other);
        st->other[st->n_other++] = st->t[i];
    }
    if (!rc) st->n = kept;
    return rc;
}

const char *st_other_dtype(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n_other; i++)
        if (!strcmp(st->other[i].name, name)) return st->other[i].other;
    return NULL;
}

int st_parse(SafeTensors *st, const void *buf, size_t size, const char *label, int errcode) {
    memset(st, 0, sizeof *st);
    if (!label) label = "(buffer)";
    st->path = xstrdup(label);
    int rc = !buf && size ? st_fail(errcode, label, "no data") : parse(st, buf, size, label, errcode);
    if (rc) st_close(st);
    return rc;
}

int st_open(SafeTensors *st, const char *path, int errcode) {
    memset(st, 0, sizeof *st);
    int fd = file_open_regular(path, errcode); /* a FIFO, directory or device is refused before it is read */
    if (fd < 0) return errcode;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return st_fail(errcode, path, "cannot stat: %s", strerror(e));
    }
    if (sb.st_size == 0) {
        close(fd);
        return st_fail(errcode, path, "empty file");
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return st_fail(errcode, path, "file too large to map");
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return st_fail(errcode, path, "cannot map: %s", strerror(e));
    int rc = st_parse(st, map, size, path, errcode);
    if (rc) {
        munmap(map, size);
        return rc;
    }
    st->map = map;
    st->map_size = size;
    return 0;
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->t[mid].name);
        if (c == 0) return &st->t[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

void st_release(const SafeTensors *st, const StTensor *t) {
    if (!st->map || !t->nbytes) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)t->data & ~(page - 1),
              hi = ((uintptr_t)t->data + t->nbytes + page - 1) & ~(page - 1);
    madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a read-only private mapping: pages refault from the file */
}

/* ---- conversion --------------------------------------------------------- */

void st_to_f32(const StTensor *t, float *out) {
    if (t->numel <= 0) return;
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case DTYPE_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out, p, n * 4);
#else
        for (size_t i = 0; i < n; i++, p += 4)
            out[i] = f32_from_bits((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                   (uint32_t)p[3] << 24);
#endif
        break;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++, p += 2) out[i] = half_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++, p += 2) out[i] = bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    }
}

/* ---- writer ------------------------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes all of p[0..n), retrying short writes; 0 or -1 with errno set. */
static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static cJSON *json_int(int64_t v) {
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    return cJSON_CreateRaw(s);
}

/* The header JSON text, or NULL after err_set for a bad tensor description. */
static char *build_header(const char *path, const StOut *t, int n, size_t *total) {
    if (n < 0) {
        err_set(ERR_OUTPUT, "cannot write '%s': negative tensor count", path);
        return NULL;
    }
    const char **names = xcalloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        if (!t[i].name) {
            free(names);
            err_set(ERR_OUTPUT, "cannot write '%s': tensor %d has no name", path, i);
            return NULL;
        }
        names[i] = t[i].name;
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]) || !strcmp(names[i], "__metadata__")) {
            err_set(ERR_OUTPUT, "cannot write '%s': duplicate or reserved tensor name '%s'", path,
                    names[i]);
            free(names);
            return NULL;
        }
    if (n == 1 && !strcmp(names[0], "__metadata__")) {
        free(names);
        err_set(ERR_OUTPUT, "cannot write '%s': reserved tensor name '__metadata__'", path);
        return NULL;
    }
    free(names);

    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddItemToObject(root, "__metadata__", meta);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        int bad = t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS;
        for (int d = 0; !bad && d < t[i].ndim; d++) {
            int64_t v = t[i].shape[d];
            if (v < 0 || (v && numel > (INT64_MAX / 8) / v)) bad = 1;
            else numel *= v;
        }
        bad |= t[i].dtype != DTYPE_F32 && t[i].dtype != DTYPE_F16 && t[i].dtype != DTYPE_BF16;
        int64_t es = bad ? 4 : (int64_t)dtype_size(t[i].dtype);
        if (bad || (numel && !t[i].data) || off > INT64_MAX / 2 - numel * es) {
            cJSON_Delete(root);
            err_set(ERR_OUTPUT, "cannot write '%s': tensor '%s' has a bad shape, dtype or no data", path,
                    t[i].name);
            return NULL;
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t[i].dtype));
        cJSON *shape = cJSON_CreateArray();
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(shape, json_int(t[i].shape[d]));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON *offs = cJSON_CreateArray();
        cJSON_AddItemToArray(offs, json_int(off));
        cJSON_AddItemToArray(offs, json_int(off + numel * es));
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(root, t[i].name, e);
        off += numel * es;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) die("out of memory printing a safetensors header");
    *total = (size_t)off;
    return text;
}

int st_write(const char *path, const StOut *t, int n) {
    size_t total = 0;
    char *json = build_header(path, t, n, &total);
    if (!json) return ERR_OUTPUT;
    size_t jn = strlen(json), hn = (jn + 7) & ~(size_t)7;
    unsigned char *head = xmalloc(8 + hn);
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    memcpy(head + 8, json, jn);
    memset(head + 8 + jn, ' ', hn - jn);
    free(json);

    OutFile o; /* a temporary file renamed over path when complete; never a device node or a link replaced */
    int rc = out_begin(&o, path);
    if (rc) {
        free(head);
        return rc;
    }
    int fd = o.fd;
    if (write_all(fd, head, 8 + hn) != 0) goto fail_errno;
    for (int i = 0; i < n; i++) {
        size_t numel = 1; /* cannot overflow: build_header checked the shape */
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        if (!numel) continue;
        if (t[i].dtype != DTYPE_F32) { /* F16 / BF16: convert a chunk at a time, little-endian */
            unsigned char buf[2 * 4096];
            for (size_t k0 = 0; k0 < numel; k0 += 4096) {
                size_t m = numel - k0 < 4096 ? numel - k0 : 4096;
                for (size_t k = 0; k < m; k++) {
                    uint16_t h = t[i].dtype == DTYPE_F16 ? f32_to_half(t[i].data[k0 + k]) : f32_to_bf16(t[i].data[k0 + k]);
                    buf[2 * k] = (unsigned char)h;
                    buf[2 * k + 1] = (unsigned char)(h >> 8);
                }
                if (write_all(fd, buf, 2 * m) != 0) goto fail_errno;
            }
            continue;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (write_all(fd, t[i].data, numel * 4) != 0) goto fail_errno;
#else
        for (size_t k = 0; k < numel; k++) {
            uint32_t u = f32_bits(t[i].data[k]);
            unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                  (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
            if (write_all(fd, b, 4) != 0) goto fail_errno;
        }
#endif
    }
    free(head);
    return out_commit(&o);

fail_errno:;
    int e = errno;
    out_abort(&o);
    free(head);
    return err_set(ERR_OUTPUT, "cannot write '%s': %s", path, strerror(e));
}
