/* fashion_folder.c - turn Fashion-MNIST (the gzip'd idx files of Debian's dataset-fashion-mnist) into an
 * ImageFolder directory of grayscale 28x28 PNGs: OUT/<k>-<Class-name>/<split>-<index>.png, one directory
 * per chosen class, the directory names sorting in label order. Used by `make demo` (tools/demo.sh)
 * and the demo tests; needs only the build dependencies (zlib, libstb). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

static const char *const class_dirs[10] = {"0-T-shirt-top", "1-Trouser", "2-Pullover", "3-Dress", "4-Coat",
                                           "5-Sandal",      "6-Shirt",   "7-Sneaker",  "8-Bag",   "9-Ankle-boot"};

static const char *usage_text =
    "usage: fashion_folder -o OUTDIR [--split train|test] [--classes LIST] [--per-class N] [--skip K]\n"
    "                      [--seed S] [--data-dir DIR]\n"
    "  Writes Fashion-MNIST images as an ImageFolder: OUTDIR/<k>-<Class-name>/<split>-<index>.png.\n"
    "  --split      train (60000 images) or test (10000) file set (default train)\n"
    "  --classes    comma-separated class ids 0-9 (default 5,6,7,8,9)\n"
    "  --per-class  images per class, a seeded choice among the class's images; 0 = all (default 0)\n"
    "  --skip       leave out the first K images of that seeded order, so that the same seed with\n"
    "               --per-class N and with --skip N gives disjoint sets (default 0)\n"
    "  --seed       seed of the choice (default 0)\n"
    "  --data-dir   where the idx files are (default /usr/share/datasets/fashion-mnist)\n"
    "  Existing files of the same name are replaced; nothing else in OUTDIR is touched.\n";

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "fashion_folder: %s\n", msg);
    fputs(usage_text, stderr);
    return 2;
}

/* Read a whole gzip'd file; returns malloc'd bytes or NULL (message printed). */
static unsigned char *read_gz(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fashion_folder: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "fashion_folder: %s: out of memory\n", path);
            gzclose(f);
            return NULL;
        }
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = nb;
            cap *= 2;
        }
        int r = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            int e;
            fprintf(stderr, "fashion_folder: %s: cannot decompress: %s\n", path, gzerror(f, &e));
            free(buf);
            gzclose(f);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    gzclose(f);
    *len = n;
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check the idx header: unsigned bytes, `ndim` dimensions, data size matching. Returns the count. */
static int64_t idx_check(const char *path, const unsigned char *b, size_t len, int ndim, uint32_t *dims)
{
    if (len < 4 + 4 * (size_t)ndim || b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] != ndim) {
        fprintf(stderr, "fashion_folder: %s: not an unsigned-byte idx file of rank %d\n", path, ndim);
        return -1;
    }
    uint64_t total = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(b + 4 + 4 * i);
        total *= dims[i];
    }
    if (total != len - 4 - 4 * (size_t)ndim) {
        fprintf(stderr, "fashion_folder: %s: header says %llu bytes of data, file has %zu\n", path,
                (unsigned long long)total, len - 4 - 4 * (size_t)ndim);
        return -1;
    }
    return dims[0];
}

/* splitmix64: the seeded choice of images */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* mkdir -p */
static int make_dir(const char *path)
{
    char buf[4400];
    size_t n = strlen(path);
    if (n >= sizeof buf) {
        fprintf(stderr, "fashion_folder: %s: path too long\n", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/')
            continue;
        buf[i] = 0;
        mkdir(buf, 0777); /* errors show up below, on the full path */
        buf[i] = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "fashion_folder: %s: cannot create directory: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "fashion_folder: %s: not a directory\n", path);
        return -1;
    }
    return 0;
}

/* Write one PNG atomically (temporary name in the same directory, then rename). */
static int write_png(const char *path, const unsigned char *pix, int h, int w)
{
    char tmp[4400];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof tmp) {
        fprintf(stderr, "fashion_folder: %s: path too long\n", path);
        return -1;
    }
    if (!stbi_write_png(tmp, w, h, 1, pix, w)) {
        fprintf(stderr, "fashion_folder: %s: cannot write PNG\n", tmp);
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "fashion_folder: %s: cannot rename into place: %s\n", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *outdir = NULL, *split = "train", *classes_s = "5,6,7,8,9";
    const char *data_dir = "/usr/share/datasets/fashion-mnist";
    int64_t per_class = 0, skip = 0, seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (i + 1 >= argc)
            return usage("an option is missing its value");
        const char *v = argv[++i];
        if (!strcmp(a, "-o"))
            outdir = v;
        else if (!strcmp(a, "--split"))
            split = v;
        else if (!strcmp(a, "--classes"))
            classes_s = v;
        else if (!strcmp(a, "--data-dir"))
            data_dir = v;
        else if (!strcmp(a, "--per-class")) {
            if (parse_i64(v, 0, 1000000, &per_class))
                return usage("--per-class needs an integer >= 0");
        } else if (!strcmp(a, "--skip")) {
            if (parse_i64(v, 0, 1000000, &skip))
                return usage("--skip needs an integer >= 0");
        } else if (!strcmp(a, "--seed")) {
            if (parse_i64(v, 0, INT64_MAX, &seed))
                return usage("--seed needs an integer >= 0");
        } else {
            fprintf(stderr, "fashion_folder: unknown option '%s'\n", a);
            return usage(NULL);
        }
    }
    if (!outdir)
        return usage("-o OUTDIR is required");
    if (strcmp(split, "train") && strcmp(split, "test"))
        return usage("--split must be train or test");

    int want[10] = {0}, n_classes = 0;
    for (const char *p = classes_s; *p;) {
        if (*p < '0' || *p > '9' || (p[1] && p[1] != ','))
            return usage("--classes expects comma-separated class ids 0-9");
        if (want[*p - '0'])
            return usage("--classes lists a class twice");
        want[*p - '0'] = 1;
        n_classes++;
        p += p[1] ? 2 : 1;
    }
    if (n_classes == 0)
        return usage("--classes is empty");

    const char *prefix = strcmp(split, "train") ? "t10k" : "train";
    char img_path[4096], lbl_path[4096];
    snprintf(img_path, sizeof img_path, "%s/%s-images-idx3-ubyte.gz", data_dir, prefix);
    snprintf(lbl_path, sizeof lbl_path, "%s/%s-labels-idx1-ubyte.gz", data_dir, prefix);
    size_t img_len = 0, lbl_len = 0;
    unsigned char *img = read_gz(img_path, &img_len);
    unsigned char *lbl = img ? read_gz(lbl_path, &lbl_len) : NULL;
    int rc = 1;
    int64_t *idx = NULL;
    uint32_t idims[3], ldims[1];
    if (!img || !lbl)
        goto done;
    int64_t n = idx_check(img_path, img, img_len, 3, idims);
    int64_t nl = idx_check(lbl_path, lbl, lbl_len, 1, ldims);
    if (n < 0 || nl < 0)
        goto done;
    if (n != nl) {
        fprintf(stderr, "fashion_folder: %s has %lld images but %s %lld labels\n", img_path, (long long)n, lbl_path,
                (long long)nl);
        goto done;
    }
    int h = (int)idims[1], w = (int)idims[2];
    if (h <= 0 || w <= 0 || h > 4096 || w > 4096) {
        fprintf(stderr, "fashion_folder: %s: absurd image size %dx%d\n", img_path, h, w);
        goto done;
    }
    const unsigned char *pix = img + 16, *labels = lbl + 8;
    idx = malloc(sizeof *idx * (size_t)(n ? n : 1));
    if (!idx) {
        fprintf(stderr, "fashion_folder: out of memory\n");
        goto done;
    }
    if (make_dir(outdir))
        goto done;

    int64_t written = 0;
    for (int c = 0; c < 10; c++) {
        if (!want[c])
            continue;
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (labels[i] == c)
                idx[m++] = i;
        int64_t take = m, *first = idx;
        if (per_class > 0 || skip > 0) {
            int64_t end = per_class > 0 ? skip + per_class : m;
            if (end > m || skip >= m) {
                fprintf(stderr, "fashion_folder: %s: class %d has %lld images, %lld requested (%lld skipped)\n",
                        lbl_path, c, (long long)m, (long long)(end - skip), (long long)skip);
                goto done;
            }
            /* partial Fisher-Yates with a per-class stream; the chosen slice [skip, end) in file order */
            uint64_t s = (uint64_t)seed * 1000003u + (uint64_t)c;
            for (int64_t i = 0; i < end; i++) {
                int64_t j = i + (int64_t)(next_rand(&s) % (uint64_t)(m - i));
                int64_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
            first = idx + skip;
            take = end - skip;
            qsort(first, (size_t)take, sizeof *idx, cmp_i64);
        }
        char dir[4200], file[4300];
        int len = snprintf(dir, sizeof dir, "%s/%s", outdir, class_dirs[c]);
        if (len < 0 || (size_t)len >= sizeof dir) {
            fprintf(stderr, "fashion_folder: %s: path too long\n", outdir);
            goto done;
        }
        if (make_dir(dir))
            goto done;
        for (int64_t i = 0; i < take; i++) {
            len = snprintf(file, sizeof file, "%s/%s-%05lld.png", dir, split, (long long)first[i]);
            if (len < 0 || (size_t)len >= sizeof file) {
                fprintf(stderr, "fashion_folder: %s: path too long\n", dir);
                goto done;
            }
            if (write_png(file, pix + (size_t)first[i] * (size_t)h * (size_t)w, h, w))
                goto done;
        }
        written += take;
    }
    printf("fashion_folder: %lld %s images of %d classes written to %s\n", (long long)written, split, n_classes,
           outdir);
    rc = 0;
done:
    free(idx);
    free(img);
    free(lbl);
    return rc;
}
