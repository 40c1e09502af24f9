"""Sparse tables of (row, hashtag) values and the index helpers every model shares: sorted keys ``row * H + h``
looked up by binary search or by runs, CSR tables read back as dense rows, scipy CSR -> keys. Pure tensor code; no
model here."""
import numpy as np
import torch


def rows(x, index):
    """x[index] for a 1-D index. index_select copies whole rows and its backward is index_add, both cheaper on CPU
    than advanced indexing (aten::index / index_put_)."""
    return x.index_select(0, index)


def run_positions(starts, lens):
    """Where the entries of runs [starts[i], starts[i] + lens[i]) of a flat table lie: (run of each entry [E], its
    index into the table [E]), runs in order."""
    row = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    offset = torch.arange(int(lens.sum()), device=lens.device) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens,
                                                                                         lens)
    return row, torch.repeat_interleave(starts, lens) + offset


def csr_positions(ptr, ids):
    """Where the entries of rows ``ids`` of a CSR table (``ptr`` [n + 1]) lie: (position in ``ids`` [E], index into
    the table's entries [E]) for every entry of every given row, rows in order."""
    return run_positions(ptr[ids], ptr[ids + 1] - ptr[ids])


def gather_rows(table, index):
    """table[index] for a 2-D (or any) index: [*index.shape, d], via index_select on the flattened index."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.size(-1))


def lookup_pairs(keys, values, ids, hashtags, num_hashtag):
    """values of the keys ids * H + hashtags ([B] ids, [B, C] candidates; keys sorted ascending, 0 where absent):
    [B, C], by one binary search per (row, hashtag)."""
    return sorted_lookup(keys, values, ids.unsqueeze(1) * num_hashtag + hashtags)


def lookup_rows(keys, values, ids, num_hashtag):
    """``lookup_pairs`` over every hashtag (full ranking): [B, H]; each row's entries are found as one run of the
    sorted keys and scattered into a dense row, instead of one binary search per (row, hashtag)."""
    row, col, val = pair_entries(keys, values, ids, num_hashtag)
    out = torch.zeros(len(ids), num_hashtag, dtype=values.dtype, device=values.device)
    out[row, col] = val
    return out


def pair_entries(keys, values, ids, num_hashtag):
    """The stored entries of rows ``ids`` [B] over every hashtag (keys = id * H + hashtag, sorted ascending): (row in
    ``ids``, hashtag, value) of each, rows in order: the sparse form of ``lookup_pairs`` under full ranking."""
    lo = torch.searchsorted(keys, ids * num_hashtag)
    row, at = run_positions(lo, torch.searchsorted(keys, (ids + 1) * num_hashtag) - lo)
    return row, keys[at] % num_hashtag, values[at]


def sorted_lookup(keys, values, query):
    """values[i] where keys[i] == query (keys sorted ascending), 0 where query is not among keys: [*query.shape]."""
    pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[pos] == query, values[pos], torch.zeros((), dtype=values.dtype, device=query.device))


def keys_to_csr(keys, values, num_rows, width):
    """Sorted keys row * width + col with their values -> CSR (ptr [num_rows + 1], cols, values)."""
    rows = keys // width
    ptr = torch.zeros(num_rows + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return ptr, keys % width, values


def csr_dense(ptr, cols, values, ids, width):
    """Rows ``ids`` [B] of a CSR table as a dense [B, width] tensor (zeros where a row has no entry)."""
    row, at = csr_positions(ptr, ids)
    out = torch.zeros(len(ids), width, dtype=values.dtype, device=values.device)
    out[row, cols[at]] = values[at]
    return out


class SparseTables:
    """Per-row sparse tables of a model (CSR buffers, data not weights) read back as dense [B, H] rows: TagMix's and
    TagBlend's terms. Needs ``self.num_hashtag``."""

    def _register_csr(self, name, table):
        """A CSR table (ptr, cols, values) as the buffers ``name``_ptr / _cols / _values (data, not weights)."""
        for part, t in zip(('ptr', 'cols', 'values'), table):
            self.register_buffer(f'{name}_{part}', t, persistent=False)

    def _dense(self, name, ids):
        """Rows ``ids`` [B] of the table ``name`` as a dense [B, H] tensor."""
        return csr_dense(getattr(self, f'{name}_ptr'), getattr(self, f'{name}_cols'), getattr(self, f'{name}_values'),
                         ids, self.num_hashtag)


def csr_keys(m):
    """A scipy CSR [n, H] -> (sorted keys row * H + col, float32 values) as torch tensors."""
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = torch.from_numpy(rows * m.shape[1] + m.indices.astype(np.int64))
    return keys, torch.from_numpy(m.data.astype(np.float32))
