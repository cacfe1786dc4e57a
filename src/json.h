/* json.h - a small streaming JSON writer (commas and escaping handled), for --json outputs
 * and the training logs. */
#ifndef OTL_JSON_H
#define OTL_JSON_H

#include <stdint.h>
#include <stdio.h>

typedef struct otl_json {
    FILE *fp;
    int depth;
    int first[64]; /* per nesting level: nothing written yet */
    int after_key;
} otl_json;

void otl_json_init(otl_json *j, FILE *fp);
void otl_json_obj(otl_json *j);     /* { */
void otl_json_obj_end(otl_json *j); /* } */
void otl_json_arr(otl_json *j);     /* [ */
void otl_json_arr_end(otl_json *j); /* ] */
void otl_json_key(otl_json *j, const char *k);
void otl_json_str(otl_json *j, const char *s); /* NULL -> null */
void otl_json_strn(otl_json *j, const char *s, size_t n);
void otl_json_int(otl_json *j, int64_t v);
void otl_json_num(otl_json *j, double v);      /* non-finite -> null */
void otl_json_bool(otl_json *j, int v);
void otl_json_null(otl_json *j);
/* Write pre-formatted JSON text as one value (e.g. stored preprocessing). */
void otl_json_raw(otl_json *j, const char *text);

#endif
