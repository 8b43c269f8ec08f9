/* coord_model.c - the job's model files: built, content-addressed in the state, copied to --out.
 *
 * A model file is the job's schema, the global preprocessing (from the summed stats) and
 * the parameters, with metadata that has no timestamp: the same parameters give the same
 * bytes, so the same content address, in a resumed run. Files are written (and fsynced)
 * by the state (fv_state_model_put) before the transaction that names them.
 *
 * params_hash is what agents hold and name: the SHA-256 of the parameters' bytes, as the
 * VEC_END digest of the model vector.
 *
 * The stats round's sum (coord__stats_apply) goes to the job machine (fv_round_job.h),
 * which derives the job's starting point from it: the global preprocessing, the initial
 * model (seeded by the job), the server optimizer; again from the same sum when a job
 * resumes.
 *
 * Threading: the loop thread only. Ownership: models are built from, never keep, the
 * coordinator's parameters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_crypto.h"
#include "fv_model.h"

/* ---- model versions ------------------------------------------------------------ */

void coord__params_hash(const fv_mlp_t *m, uint8_t out[32])
{
    fv_cjob_params_hash(m, out); /* the VEC_END digest of the model vector */
}

/* The complete model file of parameters mlp: the job's schema, the global preprocessing
 * (from the summed stats) and metadata without a timestamp, so the same parameters give
 * the same bytes, and so the same content address, in a resumed run. */
static int build_model(coord_t *c, const fv_mlp_t *mlp, uint64_t round, fv_model_t **ret)
{
    fv_diag_t d;
    char *sj = NULL;
    size_t sl = 0;
    fv_schema_t *s = NULL;
    fv_preproc_t *p = NULL;
    fv_mlp_t *m = NULL;
    int r = fv_schema_to_json(c->job->schema, &sj, &sl);
    if (r == 0)
        r = fv_schema_from_json("job schema", sj, sl, &s, &d);
    free(sj);
    if (r == 0) {
        fv_fed_stats_t st;
        memset(&st, 0, sizeof st);
        r = fv_fed_stats_decode(fv_cjob_stats_layout(c->model.jm), fv_cjob_stats_sum(c->model.jm),
                                &st, &d);
        if (r == 0)
            r = fv_preproc_from_moments(s, st.count, st.sum, st.sumsq, &p);
        fv_fed_stats_close(&st);
    }
    if (r == 0)
        r = fv_mlp_clone(mlp, &m);
    json_t *meta =
        json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "producer", "fedvault-coordinator", "version",
                  FV_VERSION, "commit", FV_COMMIT, "job", c->run.job_hex, "round",
                  (json_int_t)round, "n_ref", (json_int_t)fv_cjob_n_ref(c->model.jm));
    if (coord__distilling(c) && mlp != fv_cjob_teacher(c->model.jm)) {
        /* a student: what it was distilled from, and how */
        json_object_set_new(meta, "role", json_string("student"));
        json_object_set_new(meta, "teacher", json_string(c->distill.teacher_sha));
        json_object_set_new(meta, "temperature", json_real(c->job->distill.temperature));
        json_object_set_new(meta, "alpha", json_real(c->job->distill.alpha));
    }
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    if (r == 0) {
        r = fv_model_new(s, p, m, meta_s, ret);
        s = NULL, p = NULL, m = NULL, meta_s = NULL;
    }
    fv_preproc_free(p);
    fv_schema_free(s);
    fv_mlp_free(m);
    free(meta_s);
    return r;
}

int coord__model_put(coord_t *c, const fv_mlp_t *mlp, uint64_t round, bool int8, char sha[65],
                     size_t *ret_len, fv_diag_t *d)
{
    fv_model_t *model = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    snprintf(d->msg, sizeof d->msg, "cannot build the model file");
    int r = build_model(c, mlp, round, &model);
    if (r == 0) {
        model->int8 = int8;
        r = fv_model_encode(model, &buf, &len);
    }
    if (r == 0)
        r = fv_state_model_put(c->st, buf, len, sha, d);
    if (r == 0 && ret_len != NULL)
        *ret_len = len;
    free(buf);
    fv_model_free(model);
    return r;
}

int coord__model_save(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round,
                      fv_diag_t *d)
{
    fv_model_t *model = NULL;
    snprintf(d->msg, sizeof d->msg, "cannot build the model file");
    int r = build_model(c, mlp, round, &model);
    if (r == 0)
        r = fv_model_save(model, path, d);
    fv_model_free(model);
    return r;
}

static void mf_run(uv_work_t *req)
{
    coord_mfwork_t *w = req->data;
    coord__params_hash(w->mlp, w->hash);
    w->put_rc = coord__model_put(w->c, w->mlp, w->round, false, w->sha, NULL, &w->put_d);
    if (w->put_rc == 0 && w->path[0] != '\0')
        w->save_rc = coord__model_save(w->c, w->mlp, w->path, w->round, &w->save_d);
}

static void mf_done(uv_work_t *req, int status)
{
    coord_mfwork_t *w = req->data;
    coord_t *c = w->c;
    c->run.files_busy = false;
    if (status == 0 && !c->stopping) {
        coord__loopstat_begin(c, "model.files_done");
        if (w->save_rc != 0)
            coord_logj("error", "model_save_failed",
                       json_pack("{s:s,s:s,s:s}", "path", w->path, "err", fv_err_name(w->save_rc),
                                 "why", w->save_d.msg));
        if (w->put_rc != 0)
            coord_logj("error", "model_store_failed",
                       json_pack("{s:s,s:I,s:s,s:s}", "job", c->run.job_hex, "round",
                                 (json_int_t)w->round, "err", fv_err_name(w->put_rc), "why",
                                 w->put_d.msg));
        w->done(c, w);
        coord__loopstat_end(c);
    }
    free(w);
}

int coord__model_files_async(coord_t *c, const fv_mlp_t *mlp, uint64_t round, const char *path,
                             void (*done)(coord_t *c, coord_mfwork_t *w))
{
    coord_mfwork_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return FV_ENOMEM;
    w->c = c;
    w->mlp = mlp;
    w->round = round;
    snprintf(w->path, sizeof w->path, "%s", path != NULL ? path : "");
    w->done = done;
    w->req.data = w;
    int r = uv_queue_work(c->net.loop, &w->req, mf_run, mf_done);
    if (r != 0) {
        free(w);
        return r;
    }
    c->run.files_busy = true;
    return 0;
}

/* Writes the model file into the state directory (content-addressed, fsynced).
 * int8: the file holds the weights quantized (fv_model_t.int8). ret_len (may be NULL):
 * the file's size. */
int coord__store_model_as(coord_t *c, const fv_mlp_t *mlp, uint64_t round, bool int8, char sha[65],
                          size_t *ret_len)
{
    fv_diag_t d;
    int r = coord__model_put(c, mlp, round, int8, sha, ret_len, &d);
    if (r != 0)
        coord_logj("error", "model_store_failed",
                   json_pack("{s:s,s:I,s:s,s:s}", "job", c->run.job_hex, "round", (json_int_t)round,
                             "err", fv_err_name(r), "why", d.msg));
    return r;
}

int coord__store_model(coord_t *c, const fv_mlp_t *mlp, uint64_t round, char sha[65])
{
    return coord__store_model_as(c, mlp, round, false, sha, NULL);
}

/* A copy for the operator under --out (final.fvm, model-rNNNN.fvm). */
int coord__save_model(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round)
{
    fv_diag_t d;
    int r = coord__model_save(c, mlp, path, round, &d);
    if (r != 0)
        coord_logj("error", "model_save_failed",
                   json_pack("{s:s,s:s}", "path", path, "err", fv_err_name(r)));
    return r;
}

/* ---- from the stats round -------------------------------------------------------- */

void coord__stats_ready(coord_t *c)
{
    const fv_mlp_t *g = fv_cjob_global(c->model.jm);
    coord_logj("info", "stats_ready",
               json_pack("{s:s,s:I,s:I,s:I}", "job", c->run.job_hex, "n_ref",
                         (json_int_t)fv_cjob_n_ref(c->model.jm), "features",
                         (json_int_t)fv_preproc_n_features(fv_cjob_preproc(c->model.jm)), "params",
                         (json_int_t)fv_mlp_n_params(g)));
}
