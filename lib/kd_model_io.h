/* kd_model_io — model files (HDF5, kind "model").  Architecture options as
 * root attributes, parameters and buffers as float datasets under their
 * PyTorch names (num_batches_tracked as i64).  Separate from kd_model.h so
 * that users of the engine alone do not compile against HDF5. */
#ifndef KD_MODEL_IO_H
#define KD_MODEL_IO_H

#include "kd_h5.h"
#include "kd_model.h"

/* save writes into an open file so that a checkpoint can add optimiser
 * state before committing; load_h5 reads a model from an open file (a
 * model file or a distill-step checkpoint, which is a model file with a
 * "train" group).  NULL / -1 with kd_err. */
int kd_model_save_h5(const kd_model *m, kd_h5 *h);
kd_model *kd_model_load_h5(const kd_h5 *h);
int kd_model_save(const kd_model *m, const char *path); /* atomic */
kd_model *kd_model_load(const char *path);

#endif
