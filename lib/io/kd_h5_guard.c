/* kd_h5_guard — checks made before HDF5 sees a dataset's data: HDF5 1.10
 * trusts the file's own records when it sizes buffers and reads chunks, and
 * a small corrupt or hostile file can make it allocate gigabytes, read out
 * of bounds, or hand a reader a shape whose rows were never written. */
#include "kd_h5_guard.h"

#include "kd_err.h"

/* 0 every element has storage; 1 none has; 2 some chunks are missing.
 * (H5Dget_space_status compares bytes, so it calls any compressed dataset
 * partly allocated; chunks are counted instead.) */
int kd_h5_unwritten(hid_t ds, int rank, const hsize_t *d)
{
    hid_t pl = H5Dget_create_plist(ds);
    H5D_layout_t lay = pl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(pl);
    int rc = 0;
    if (lay == H5D_CHUNKED) {
        hsize_t c[KD_MAX_RANK], want = 1, have = 0;
        hid_t sp = H5Dget_space(ds); /* 1.10 refuses H5S_ALL here */
        if (sp < 0 || H5Pget_chunk(pl, rank, c) != rank || H5Dget_num_chunks(ds, sp, &have) < 0)
            rc = 1;
        else {
            for (int i = 0; i < rank; i++)
                want *= c[i] ? (d[i] + c[i] - 1) / c[i] : 0;
            rc = have >= want ? 0 : have ? 2 : 1;
        }
        if (sp >= 0)
            H5Sclose(sp);
    } else if (lay == H5D_CONTIGUOUS) {
        H5D_space_status_t st;
        rc = H5Dget_space_status(ds, &st) < 0 || st != H5D_SPACE_STATUS_ALLOCATED;
    } else if (lay != H5D_COMPACT)
        rc = 1;
    if (pl >= 0)
        H5Pclose(pl);
    return rc;
}

/* HDF5 sizes the buffers of a chunked read from the file's own records
 * (the layout's chunk dimensions, each chunk's stored size) and trusts them:
 * a corrupt file could ask for gigabytes, or hand the Fletcher-32 filter a
 * chunk shorter than its checksum (HDF5 1.10 then reads before the buffer).
 * Checked first: the chunks cannot hold more bytes than the file, nor one
 * chunk more than the larger of the whole dataset and 64 MiB (kdpipe's
 * chunks are ~1 MiB or one row; h5py's never exceed the dataset); each
 * chunk of rows [start, start+count) lies in the file and, checksummed,
 * holds at least its 4-byte checksum (up to 4096 chunks a read). */
int kd_h5_storage_ok(const kd_h5 *h, hid_t ds, hid_t sp, const char *name, int64_t start, int64_t count)
{
    hid_t dcpl = H5Dget_create_plist(ds), ft = H5Dget_type(ds);
    int ok = dcpl >= 0 && ft >= 0;
    if (ok && H5Pget_layout(dcpl) == H5D_CHUNKED) {
        hsize_t cd[H5S_MAX_RANK], dims[H5S_MAX_RANK], fsize = 0, lo[H5S_MAX_RANK], hi[H5S_MAX_RANK], at[H5S_MAX_RANK];
        int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, cd), srank = H5Sget_simple_extent_dims(sp, dims, NULL);
        double cbytes = (double)H5Tget_size(ft), dbytes = cbytes, nchunks = count > 0;
        ok = rank > 0 && rank == srank && H5Fget_filesize(h->id, &fsize) >= 0;
        for (int i = 0; ok && i < rank; i++) {
            ok = cd[i] > 0;
            cbytes *= (double)cd[i];
            dbytes *= (double)dims[i];
            lo[i] = at[i] = i || !ok ? 0 : (hsize_t)start / cd[0];
            hi[i] = !ok ? 0 : i ? (dims[i] + cd[i] - 1) / cd[i] : ((hsize_t)(start + count) + cd[0] - 1) / cd[0];
            nchunks *= hi[i] > lo[i] ? (double)(hi[i] - lo[i]) : 0;
        }
        ok = ok && cbytes <= (dbytes > 64.0 * (1 << 20) ? dbytes : 64.0 * (1 << 20)) &&
             H5Dget_storage_size(ds) <= fsize;
        int fl = H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, NULL, NULL, NULL, 0, NULL, NULL) >= 0;
        for (double k = 0; ok && k < nchunks && nchunks <= 4096; k++) {
            hsize_t off[H5S_MAX_RANK], size = 0;
            haddr_t addr = HADDR_UNDEF;
            unsigned mask = 0;
            for (int i = 0; i < rank; i++)
                off[i] = at[i] * cd[i];
            ok = H5Dget_chunk_info_by_coord(ds, off, &mask, &addr, &size) >= 0 &&
                 (addr == HADDR_UNDEF || (addr <= fsize && size <= fsize - addr && (!fl || size >= 4)));
            for (int i = rank - 1; i >= 0 && ++at[i] == hi[i]; i--)
                at[i] = lo[i];
        }
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (ft >= 0)
        H5Tclose(ft);
    if (!ok)
        kd_err_set("%s: dataset '%s': its chunk records are inconsistent with the file (corrupt file)", h->path, name);
    return ok ? 0 : -1;
}

