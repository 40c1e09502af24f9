"""The training triples and their negatives, drawn fresh every epoch (the authors' sampler and two others)."""
import torch
from torch.utils.data import Dataset

from data_load import DataError, csr_gather, csr_rows


class TripleSampler(Dataset):
    """Training triples (u, v, h+) with ``num_neg`` fresh negatives h- per epoch: training hashtags not on video v.

    ``negatives``: ``uniform`` over the training hashtags (the authors' sampler); ``popularity``: in proportion to
    their training uses (a uniform draw over the training triples' hashtags); ``user``: half of the draws from the
    user's own training hashtags (those not on v), half uniform, so a model also learns to order a user's own
    hashtags and not only to tell them from strangers (a user whose every hashtag is on v gets uniform ones).
    ``__getitems__`` draws a whole batch at once (vectorised rejection sampling against the sorted
    (video, hashtag) keys of every video's hashtags), so DataLoader workers sample batches, not rows.
    """

    def __init__(self, data, num_neg=1, negatives='uniform'):
        if negatives is True or negatives is False:   # the older boolean form: popularity or not
            negatives = 'popularity' if negatives else 'uniform'
        self.train = data.train
        H = data.num_hashtag
        vid = torch.from_numpy(csr_rows(data.vh_ptr.numpy()))
        self.video_keys = torch.sort(vid * H + data.vh_idx).values
        self.vh_ptr, self.vh_idx = data.vh_ptr, data.vh_idx
        self.pool = data.train[:, 2] if negatives == 'popularity' else data.train_hashtags
        self.negatives = negatives
        if negatives == 'user':   # each user's distinct training hashtags, CSR (graph pairs are grouped by user)
            g = data.graph
            self.user_ptr = torch.zeros(data.num_user + 1, dtype=torch.long)
            self.user_ptr[1:] = torch.cumsum(torch.bincount(g.pair_user, minlength=data.num_user), 0)
            self.user_tags = g.pair_hashtag
        self.H = H
        self.num_neg = num_neg
        if len(data.train_hashtags) < 2:
            raise DataError(f'{data.path}: fewer than two distinct training hashtags; nothing to rank')

    def __len__(self):
        return len(self.train)

    def on_video(self, videos, hashtags):
        keys = videos * self.H + hashtags
        pos = torch.searchsorted(self.video_keys, keys).clamp(max=len(self.video_keys) - 1)
        return self.video_keys[pos] == keys

    def video_hashtags(self, videos):
        """(position in ``videos``, hashtag) for every hashtag of every given video."""
        row, tags = csr_gather(self.vh_ptr.numpy(), self.vh_idx.numpy(), videos.numpy())
        return torch.from_numpy(row), torch.from_numpy(tags)

    def draw(self, videos, users=None):
        """One negative per video: [len(videos)]."""
        def uniform(n):
            return self.pool[torch.randint(len(self.pool), (n,))]

        def own(rows):   # a random training hashtag of each row's user
            lo, hi = self.user_ptr[users[rows]], self.user_ptr[users[rows] + 1]
            return self.user_tags[lo + (torch.rand(len(rows)) * (hi - lo)).long()]

        mine = torch.zeros(len(videos), dtype=torch.bool)
        if self.negatives == 'user':
            mine = torch.rand(len(videos)) < 0.5
        neg = uniform(len(videos))
        if mine.any():
            neg[mine] = own(torch.nonzero(mine).squeeze(1))
        bad = self.on_video(videos, neg)
        for attempt in range(100):
            if not bad.any():
                break
            if attempt == 20:
                mine &= ~bad   # users whose own hashtags are all on this video: uniform from here on
            idx = torch.nonzero(bad).squeeze(1)
            m = mine[idx]
            fresh = uniform(len(idx))
            if m.any():
                fresh[m] = own(idx[m])
            neg[idx] = fresh
            bad = self.on_video(videos, neg)
        for i in torch.nonzero(bad).squeeze(1).tolist():
            # a video carrying most of the training hashtags: rejection rarely hits the few left, so draw this
            # row's negative exactly from the pool without the video's own hashtags
            left = self.pool[~self.on_video(videos[i].expand(len(self.pool)), self.pool)]
            if len(left) == 0:
                raise DataError(f'could not draw a negative for video {int(videos[i])}: it carries every training '
                                f'hashtag ({len(torch.unique(self.pool))}); drop it, or add hashtags it does not carry')
            neg[i] = left[torch.randint(len(left), ())]
        return neg

    def __getitems__(self, index):
        rows = self.train[torch.as_tensor(index)]
        negs = [self.draw(rows[:, 1], rows[:, 0]) for _ in range(self.num_neg)]
        return torch.cat([rows, torch.stack(negs, 1)], 1)   # [B, 3 + num_neg]: user, video, pos, negatives

    def __getitem__(self, i):
        return self.__getitems__([i])[0]
