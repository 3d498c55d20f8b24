/* kd_knn — k-nearest-neighbour classification of feature vectors.
 *
 * KD_KNN_COSINE: the SSL papers' weighted kNN — features L2-normalised,
 * the k most similar bank vectors vote for their class with weight
 * exp(similarity / T) (T = 0.07 customary).
 * KD_KNN_EUCLID: scikit-learn's KNeighborsClassifier — the k nearest by
 * Euclidean distance vote once each; ties go to the smallest label.
 * Similarities are computed by kd_gemm in blocks of queries. */
#ifndef KD_KNN_H
#define KD_KNN_H

#include <stdint.h>

enum { KD_KNN_COSINE = 0, KD_KNN_EUCLID = 1 };

/* bank [N,D] with labels in [0,nclass); queries [M,D]; pred [M].  The
 * inputs are not modified (normalised copies are made).  -1 with kd_err
 * when out of memory or k is not in [1, N]. */
int kd_knn_predict(const float *bank, const int32_t *labels, int64_t N, int D, int nclass,
                   const float *queries, int64_t M, int k, float T, int metric, int32_t *pred);

/* The same by brute force, one query at a time in double (for the tests). */
int kd_knn_predict_ref(const float *bank, const int32_t *labels, int64_t N, int D, int nclass,
                       const float *queries, int64_t M, int k, float T, int metric, int32_t *pred);

#endif
