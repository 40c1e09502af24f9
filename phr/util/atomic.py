"""Files written whole or not at all: every writer of the suite goes through here.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file in the same folder (so the rename stays on one
file system) and renames it into place; a failure leaves the previous file and no temporary. ``append_line`` adds
one JSON line to a log with a single ``write`` of the whole line, after making sure the file ends with a newline (a
line cut short by a kill is closed, never continued). ``hold(lock_path, busy)`` makes this process the only holder
of a lock file (a second process gets ``busy``'s error), so two writers of one file or folder cannot interleave.
"""
import json
import os


def atomic_write(path, write, suffix=''):
    """``write(tmp_path)`` then ``os.replace(tmp_path, path)``. ``suffix``: the temporary's ending, for writers that
    append their own (np.save adds '.npy' to a name without it)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{os.path.basename(path)}.{os.getpid()}.tmp{suffix}')
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def write_json(path, obj, **kw):
    write_text(path, json.dumps(obj, **kw))


def save_npz(path, **arrays):
    import numpy as np
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays), suffix='.npz')


def torch_save(path, obj):
    import torch
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def open_no_follow(path, flags, mode, doing):
    """``path`` opened for reading and writing, made if missing, never through a link (``O_NOFOLLOW``: what is
    written would change the file the link points to); ``flags``: more ``os.O_*``, ``mode``: ``os.fdopen``'s. A link
    or any other failure is one ``SystemExit`` saying what could not be done (``doing``)."""
    try:
        return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | flags, 0o644), mode)
    except OSError as e:
        why = 'it is a link: remove it' if os.path.islink(path) else (e.strerror or e)
        raise SystemExit(f'error: {path}: cannot {doing} ({why})') from None


def append_line(path, record):
    """Append ``record`` as one JSON line to the log at ``path`` in one write; a last line without its newline (cut
    by a kill) is closed first, so the new record never joins it."""
    line = json.dumps(record) + '\n'
    with open_no_follow(path, os.O_APPEND, 'ab+', 'append to it') as f:   # appending would change a link's target
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b'\n':
                line = '\n' + line
        f.write(line.encode())
        f.flush()


_held = {}   # lock file -> its open file in this process (kept open: the lock lasts as long as the process)


def hold(lock_path, busy):
    """An exclusive ``flock`` on ``lock_path`` for this process, until it ends (or takes the same lock again). When
    another process holds it: ``SystemExit(busy(who))``, ``who`` being the pid the holder wrote there. The lock goes
    with the process, so a kill -9 leaves nothing to clean up. Linux/macOS (fcntl); elsewhere a no-op."""
    try:
        import fcntl
    except ImportError:
        return
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    key = os.path.realpath(lock_path)
    if key in _held:        # this process took it before (a main() called again): it is ours
        _held.pop(key).close()
    f = open_no_follow(lock_path, 0, 'a+', 'take this lock')   # a lock that is a link would truncate its target
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        who = f.read().strip()
        f.close()
        raise SystemExit(busy(who or 'pid unknown')) from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}\n')
    f.flush()
    _held[key] = f


DATASET_MARKERS = ('test.npy', 'train.npy', 'video_hashtag.npy')


def check_output(path, what, overwrite=False):
    """The one rule for a file a command writes at a path the user gave: never through a link (a symlink there is
    refused: writing would change the file it points to), never into a dataset folder (a folder holding the
    authors' id files: its own files are the data), never over an existing file unless ``overwrite``. One clear
    ``SystemExit`` naming the flag and the path otherwise."""
    if os.path.islink(path):
        raise SystemExit(f'error: {what} {path}: is a link; a tool never writes through one (it would change '
                         f'{os.path.realpath(path)}): give the file itself, or remove the link')
    folder = os.path.dirname(os.path.abspath(path))
    if any(os.path.exists(os.path.join(folder, m)) for m in DATASET_MARKERS):
        raise SystemExit(f'error: {what} {path}: is inside the dataset folder {folder}; nothing but the dataset\'s '
                         f'own tools writes there: give a path outside it')
    if os.path.isdir(path):
        raise SystemExit(f'error: {what} {path}: is a folder, expected a file path')
    if os.path.exists(path) and not overwrite:
        raise SystemExit(f'error: {what} {path}: exists; pass --overwrite to replace it')
