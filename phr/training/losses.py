"""The training losses of train.py ``--loss``: each takes (model, batch, sampler) and returns the loss summed over
the batch. A model says which it supports in ``Recommender.losses``."""
import math

import torch

from phr.core.base import Posts


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is no longer finite)."""


def bpr_loss(pos, neg):
    """The authors' loss: sum over the batch of -log2(sigmoid(s+ - s-))."""
    return torch.nn.functional.softplus(neg - pos).sum() / math.log(2.0)


def bpr_step(model, batch, sampler):
    """BPR against every negative of the row (the authors' loss with one negative)."""
    scores = model(batch[:, 0], Posts(ids=batch[:, 1]), batch[:, 2:])   # [B, 1 + K]: pos, negatives
    return bpr_loss(scores[:, :1], scores[:, 1:])


def hard_bpr_step(model, batch, sampler):
    """BPR against the hardest (highest-scored) of the row's K negatives."""
    scores = model(batch[:, 0], Posts(ids=batch[:, 1]), batch[:, 2:])
    return bpr_loss(scores[:, 0], scores[:, 1:].max(1).values)


def sampled_softmax_step(model, batch, sampler):
    """Sampled softmax: -log softmax over [s+, s-_1, ..., s-_K] at the positive, summed over the batch."""
    scores = model(batch[:, 0], Posts(ids=batch[:, 1]), batch[:, 2:])
    return (torch.logsumexp(scores, 1) - scores[:, 0]).sum()


def softmax_step(model, batch, sampler):
    """Softmax cross-entropy of the positive over all hashtags (the baselines' native loss)."""
    logits = model.score_all(model.encode(), batch[:, 0], Posts(ids=batch[:, 1]))          # [B, H]
    return torch.nn.functional.cross_entropy(logits, batch[:, 2], reduction='sum')


def bce_step(model, batch, sampler):
    """Multi-label BCE against every hashtag of the video (ConTagNet's native loss)."""
    logits = model.score_all(model.encode(), batch[:, 0], Posts(ids=batch[:, 1]))          # [B, H]
    target = torch.zeros_like(logits)
    row, tags = sampler.video_hashtags(batch[:, 1].cpu())
    target[row.to(logits.device), tags.to(logits.device)] = 1.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction='sum') / logits.size(1)


# --loss name -> fn(model, batch [B, 3 + K] (user, video, pos, K negatives), sampler) -> loss summed over the batch.
# A model says which of these it supports in ``Recommender.losses``; the candidate losses (bpr, hard_bpr,
# sampled_softmax) use the --num_train_neg negatives, softmax and bce score every hashtag.
LOSSES = {'bpr': bpr_step, 'hard_bpr': hard_bpr_step, 'sampled_softmax': sampled_softmax_step,
          'softmax': softmax_step, 'bce': bce_step}
CANDIDATE_LOSSES = ('bpr', 'hard_bpr', 'sampled_softmax')
