/*
 * fuzz_imatrix.c - fuzz target for the importance-matrix reader, both layouts: llama-imatrix's legacy .dat
 * file and the GGUF imatrix file (in_sum2 / counts tensors). Each input is written to a scratch file and
 * loaded; on success every entry is looked up by name and its values read, which must all be finite and
 * non-negative. Seeds: tests/fuzz/corpus/imatrix (tests/fuzz/make_corpus.py).
 */
#define FUZZ_NAME "imatrix"
#include "io/imatrix.h"

#include "fuzz_common.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_imatrix *m = NULL;
    lb_error err;
    if (lb_imatrix_load(fuzz_file("in.imatrix", data, size), &m, &err) != LB_OK) return 0;
    for (int64_t i = 0; i < m->n_entries; i++) {
        const lb_imatrix_entry *e = &m->entries[i];
        if (lb_imatrix_find(m, e->name) == NULL) abort();
        for (int64_t j = 0; j < e->n; j++)
            if (!isfinite(e->values[j]) || e->values[j] < 0) abort();
    }
    lb_imatrix_free(m);
    return 0;
}
