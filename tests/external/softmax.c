/* A softmax in C, audited by llmref through --exec (protocol: specs/FORMAT.md).
 *
 * Usage: softmax INPUTS OUTPUTS [mode]. Reads tensor "x" (F32 or F64, 2-D) and param "axis"
 * (the cases it supports use the last axis) from INPUTS, writes "y" to OUTPUTS.
 * mode: "" correct; "nomax" skips the max subtraction (a known wrong variant);
 * "crash" dereferences NULL; "hang" never returns.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(*size + 1);
    if (fread(data, 1, *size, f) != (size_t)*size) { fclose(f); return NULL; }
    fclose(f);
    data[*size] = 0;
    return data;
}

/* Find tensor `name` in the JSON header: its dtype code, 2-D shape and data offsets. */
static int find_tensor(const char *header, const char *name, char *dtype, long *rows, long *cols,
                       long *begin, long *end) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *at = strstr(header, key);
    if (!at) return 0;
    return sscanf(at + strlen(key), "\"data_offsets\":[%ld,%ld],\"dtype\":\"%7[A-Z0-9]\",\"shape\":[%ld,%ld]",
                  begin, end, dtype, rows, cols) == 5;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argc > 3 ? argv[3] : "";
    if (!strcmp(mode, "hang")) for (;;) {}
    if (!strcmp(mode, "crash")) { volatile int *p = NULL; *p = 1; }
    long size;
    char *data = read_file(argv[1], &size);
    if (!data) return 3;
    uint64_t header_len;
    memcpy(&header_len, data, 8);
    char *header = strndup(data + 8, header_len);
    if (strstr(header, "\\\"axis\\\": 0")) { fprintf(stderr, "only the last axis\n"); return 77; }
    char dtype[8];
    long rows, cols, begin, end;
    if (!find_tensor(header, "x", dtype, &rows, &cols, &begin, &end)) {
        fprintf(stderr, "x is not a 2-D tensor\n");
        return 77;
    }
    int wide = !strcmp(dtype, "F64");
    if (!wide && strcmp(dtype, "F32")) { fprintf(stderr, "dtype %s not supported\n", dtype); return 77; }
    const char *body = data + 8 + header_len + begin;
    long n = rows * cols, bytes = n * (wide ? 8 : 4);
    char *out = malloc(bytes);
    for (long r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0.0;
        for (long c = 0; c < cols; c++) {
            double v = wide ? ((const double *)body)[r * cols + c] : ((const float *)body)[r * cols + c];
            if (v > m) m = v;
        }
        if (!strcmp(mode, "nomax")) m = 0.0;
        for (long c = 0; c < cols; c++) {
            double v = wide ? ((const double *)body)[r * cols + c] : ((const float *)body)[r * cols + c];
            s += exp(v - m);
        }
        for (long c = 0; c < cols; c++) {
            double v = wide ? ((const double *)body)[r * cols + c] : ((const float *)body)[r * cols + c];
            double y = exp(v - m) / s;
            if (wide) ((double *)out)[r * cols + c] = y; else ((float *)out)[r * cols + c] = (float)y;
        }
    }
    char json[256];
    int len = snprintf(json, sizeof json, "{\"y\":{\"data_offsets\":[0,%ld],\"dtype\":\"%s\",\"shape\":[%ld,%ld]}}",
                       bytes, dtype, rows, cols);
    while (len % 8) json[len++] = ' ';
    FILE *f = fopen(argv[2], "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(json, 1, len, f);
    fwrite(out, 1, bytes, f);
    fclose(f);
    return 0;
}
