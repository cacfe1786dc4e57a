/* strmap.h - open-addressing hash map from borrowed C strings to ints (name look-ups in
 * graphs). Keys are not copied: they must outlive the map. */
#ifndef OTL_STRMAP_H
#define OTL_STRMAP_H

#include <stddef.h>

typedef struct otl_strmap {
    const char **keys;
    int *vals;
    size_t cap, n;
} otl_strmap;

int otl_strmap_init(otl_strmap *m, size_t expected);   /* 0 on allocation failure */
void otl_strmap_free(otl_strmap *m);
/* Insert or replace; 0 on allocation failure. */
int otl_strmap_put(otl_strmap *m, const char *key, int val);
/* Value for key, or `dflt` when absent. */
int otl_strmap_get(const otl_strmap *m, const char *key, int dflt);
int otl_strmap_has(const otl_strmap *m, const char *key);

#endif
