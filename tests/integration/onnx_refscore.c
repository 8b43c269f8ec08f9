/* onnx_refscore.c - fedvault's own scores of a CSV file, one row per line, for
 * onnx_export.py to compare with ONNX Runtime's.
 *
 * usage: fv-onnx-refscore MODEL DATA.csv OUT.txt
 *
 * Goes through exactly the library path `fedvault eval` and `fedvault predict` use
 * (fv_model_load, fv_dataset_load with the model's schema, fv_model_predict), and prints
 * each probability with %.9g (round-trips a float32): one value per line for a binary
 * model, the K class probabilities separated by ',' for a multi-class one. Exit 0 or 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fv_dataset.h"
#include "fv_model.h"

int main(int argc, char **argv)
{
    fv_diag_t d = {""};
    fv_model_t *m = NULL;
    fv_dataset_t *ds = NULL;
    float *prob = NULL;
    FILE *f = NULL;
    int r, rc = 1;

    if (argc != 4) {
        fputs("usage: fv-onnx-refscore MODEL DATA.csv OUT.txt\n", stderr);
        return 2;
    }
    if ((r = fv_model_load(argv[1], &m, &d)) != 0 ||
        (r = fv_dataset_load(argv[2], m->schema, &ds, &d)) != 0) {
        fprintf(stderr, "fv-onnx-refscore: %s\n", d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }
    size_t k = fv_mlp_arch(m->mlp)->n_out;
    prob = malloc((ds->n_rows ? ds->n_rows : 1) * k * sizeof *prob);
    if (prob == NULL || (r = fv_model_predict(m, ds, NULL, ds->n_rows, prob)) != 0) {
        fprintf(stderr, "fv-onnx-refscore: scoring: %s\n",
                prob == NULL ? "out of memory" : fv_strerror(r));
        goto out;
    }
    if ((f = fopen(argv[3], "w")) == NULL) {
        perror(argv[3]);
        goto out;
    }
    for (size_t i = 0; i < ds->n_rows; i++)
        for (size_t j = 0; j < k; j++)
            fprintf(f, "%.9g%c", (double)prob[i * k + j], j + 1 < k ? ',' : '\n');
    if (fclose(f) != 0) {
        f = NULL;
        perror(argv[3]);
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    free(prob);
    fv_dataset_free(ds);
    fv_model_free(m);
    return rc;
}
