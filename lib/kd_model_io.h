/* kd_model_io — model files (HDF5, kind "model"; man/man5/kdpipe-h5.5):
 * arch options as root attributes, parameters and buffers as float
 * datasets under their PyTorch names (num_batches_tracked as i64).  save_h5
 * writes into an open file so that a checkpoint can add training state
 * before committing. */
#ifndef KD_MODEL_IO_H
#define KD_MODEL_IO_H

#include "kd_h5.h"
#include "kd_model.h"

int kd_model_save_h5(const kd_model *m, kd_h5 *h);
kd_model *kd_model_load_h5(const kd_h5 *h);
int kd_model_save(const kd_model *m, const char *path); /* atomic */
kd_model *kd_model_load(const char *path);

#endif
