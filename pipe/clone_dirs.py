"""The pipe's own directories inside the clone: the exported credentials, the run container's credential files, and
the empty directories that mask earlier exports from it.

The clone is the repository's content and the run container mounts it read-write, so it is hostile ground:
- every directory from the clone dir down is opened with O_NOFOLLOW relative to its parent's descriptor, and every
  file is created relative to its directory's descriptor, so a link planted anywhere on the way is never followed;
- on the way down, a directory owned by another user is refused and one writable by group or others is repaired
  (go-w), before any secret is written below it;
- removal never follows a link, never recurses (a tree 1,500 levels deep is removed like a flat one, with one
  directory open at a time) and takes whatever the run container left there;
- a run killed before its cleanup (SIGKILL) leaves directories that the next run removes before anything else.
"""

import errno
import logging
import os
import secrets
import shlex
import stat
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pipe import stopping
from pipe.errors import PipeError

log = logging.getLogger("pipe")

MASK_PREFIX = ".keyless-empty-"  # the empty directories laid over an earlier export, in the clone's top directory
RUN_DIR = "gcp-run"  # the run container's credential files, next to the export directory
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a planted FIFO fails, not hangs


class Dir:
    """An open directory below the clone: children are reached, created and removed relative to its descriptor."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def open_clone(cls, clone: Path) -> "Dir":
        return cls(_open_clone(clone), clone)

    def child(self, name: str, mode: int = 0o755, create: bool = True, repair: bool = True) -> "Dir":
        """The directory `name`, created if absent (else FileNotFoundError); refused when it is a link, not a
        directory, or not ours."""
        created = False
        try:
            if create:
                os.mkdir(name, mode, dir_fd=self.fd)
                created = True
        except FileExistsError:
            pass
        except OSError as error:
            raise self._refusal(name, error) from None
        child = self._open(name)
        try:
            if created:
                os.fchmod(child.fd, mode)  # the mode meant, not what the pipe's umask (077) leaves of it
            child.check_trust(repair)
        except BaseException:
            child.close()
            raise
        return child

    def fresh(self, name: str) -> "Dir":
        """Our own 0700 directory `name`, emptied of what an earlier run left; a link or a file planted there is
        refused, never followed (and never quietly replaced: the repository holds something it should not)."""
        try:
            self._open(name).close()
        except FileNotFoundError:
            pass
        else:
            self.remove(name)
        return self.child(name, 0o700)

    def write(self, name: str, content: str) -> Path:
        """Create exclusively (never follow or overwrite an existing file or link), owner-only."""
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        return self.path / name

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def remove(self, name: str) -> None:
        """Remove `name` and everything below it, whatever it is (gone already is fine)."""
        try:
            os.unlink(name, dir_fd=self.fd)  # files, links and FIFOs alike; a directory answers EISDIR
            return
        except FileNotFoundError:
            return
        except (IsADirectoryError, PermissionError):  # Linux answers EISDIR; some file systems EPERM
            pass
        try:
            top = self._open(name)
        except FileNotFoundError:
            return
        except PipeError:
            try:  # a directory the run container made 000: its owner may open it once it has its access back
                top = Dir(_open_below(self, name), self.path / name)
            except OSError:
                raise PipeError(f"Cannot remove {self.path / name}: remove it by hand (`rm -rf {shlex.quote(str(self.path / name))}`).") from None
        _empty(top)
        top.close()
        os.rmdir(name, dir_fd=self.fd)

    def check_trust(self, repair: bool = True) -> None:
        """Refuse a directory another user owns; take group and others' write permission away from ours (unless
        `repair` is off: ACTION doctor changes nothing)."""
        status = os.fstat(self.fd)
        if status.st_uid != os.geteuid():
            raise PipeError(
                f"{self.path} belongs to user {status.st_uid}, not to the pipe's user {os.geteuid()}, so another user could "
                f"swap the credential files below it: remove it (`rm -rf {shlex.quote(str(self.path))}`) and let the pipe create it."
            )
        if status.st_mode & 0o022 and repair:
            os.fchmod(self.fd, stat.S_IMODE(status.st_mode) & ~0o022)

    def close(self) -> None:
        os.close(self.fd)

    def _open(self, name: str) -> "Dir":
        try:
            return Dir(os.open(name, _DIRECTORY, dir_fd=self.fd), self.path / name)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise self._refusal(name, error) from None

    def _refusal(self, name: str, error: OSError) -> PipeError:
        path = self.path / name
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            return PipeError(f"Cannot use {path} for the pipe's credential files ({error.strerror}): "
                             "make sure the clone directory is writable.")
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        return PipeError(f"{path} is {'a symbolic link' if link else 'not a directory'}, where the pipe keeps its credential "
                         "files: remove it from the repository (the pipe never writes secrets through links or over files).")


def _empty(top: Dir) -> None:
    """Remove everything below `top`, depth first, holding one directory open at a time: the way back up is '..',
    checked against the identity recorded on the way down, so a directory moved meanwhile stops the removal."""
    trail: list[tuple[str, tuple[int, int]]] = []  # (name in its parent, parent's (device, inode)) per level below top
    current = Dir(os.dup(top.fd), top.path)
    try:
        while True:
            below = _first_directory(current)
            if below is not None:
                status = os.fstat(current.fd)
                try:
                    child = Dir(_open_below(current, below), current.path / below)
                except OSError as error:
                    raise PipeError(f"Cannot remove {current.path / below} ({error.strerror}): remove it by hand.") from None
                trail.append((below, (status.st_dev, status.st_ino)))
                current.close()
                current = child
                continue
            if not trail:
                return
            name, parent_id = trail.pop()
            up = os.open("..", _DIRECTORY, dir_fd=current.fd)
            status = os.fstat(up)
            if (status.st_dev, status.st_ino) != parent_id:
                os.close(up)
                raise PipeError(f"{top.path} changed while the pipe removed it: remove it by hand (`rm -rf {shlex.quote(str(top.path))}`).")
            current.close()
            current = Dir(up, current.path.parent)
            try:
                os.rmdir(name, dir_fd=current.fd)
            except PermissionError:  # a parent made 0500
                os.fchmod(current.fd, stat.S_IMODE(os.fstat(current.fd).st_mode) | 0o700)
                os.rmdir(name, dir_fd=current.fd)
    finally:
        current.close()


def _first_directory(current: Dir) -> str | None:
    """Unlink every non-directory in `current`; the first directory left, or None when it is empty. A mode the run
    container set (a directory it made 0500) is ours to change back: root needs no such help, other users do."""
    try:
        names = current.names()
    except PermissionError:
        os.fchmod(current.fd, 0o700)
        names = current.names()
    for name in names:
        try:
            _unlink(current, name)
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            return name
    return None


def _unlink(current: Dir, name: str) -> None:
    try:
        os.unlink(name, dir_fd=current.fd)
    except PermissionError:
        if stat.S_ISDIR(os.stat(name, dir_fd=current.fd, follow_symlinks=False).st_mode):
            raise IsADirectoryError(name) from None  # some file systems answer EPERM for a directory
        os.fchmod(current.fd, stat.S_IMODE(os.fstat(current.fd).st_mode) | 0o700)
        os.unlink(name, dir_fd=current.fd)


def _open_below(current: Dir, name: str) -> int:
    """A directory below `current`, never through a link; one the run container made 000 is given back its owner's
    access first (O_NOFOLLOW still refuses a link put in its place meanwhile)."""
    try:
        return os.open(name, _DIRECTORY, dir_fd=current.fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=current.fd)
        return os.open(name, _DIRECTORY, dir_fd=current.fd)


@contextmanager
def parent_of(clone: Path, directory: Path, create: bool = True, repair: bool = True):
    """The directory that holds `directory`, walked from the clone dir without following any link, each step trusted
    (created on the way, or FileNotFoundError when `create` is off and a step is missing)."""
    clone = Path(os.path.normpath(clone))
    with ExitStack() as stack:
        current = Dir.open_clone(clone)
        stack.callback(current.close)
        for name in directory.parent.relative_to(clone).parts:
            current = current.child(name, create=create, repair=repair)
            stack.callback(current.close)
        yield current


def _open_clone(clone: Path) -> int:
    try:
        return os.open(clone, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise PipeError(f"The clone directory {str(clone)[:200]} (BITBUCKET_CLONE_DIR) is not a directory: Bitbucket sets "
                        "it in every step; run the pipe there, or locally set it to the repository's directory.") from None


def open_in_clone(clone: Path, path: Path) -> int:
    """A descriptor for reading the file at `path`, which must lie in the clone: every step from the clone down and the
    file itself opened without following a link (OSError ELOOP), a FIFO without blocking. ValueError when `path`
    (made absolute and normalised) is outside the clone."""
    clone = Path(os.path.normpath(clone))
    relative = Path(os.path.normpath(path)).relative_to(clone)  # ValueError outside the clone
    *directories, name = relative.parts or ("",)
    fd = os.open(clone, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for directory in directories:
            try:
                child = os.open(directory, _DIRECTORY, dir_fd=fd)
            except NotADirectoryError:  # O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR: say it is a link
                if stat.S_ISLNK(os.stat(directory, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), directory) from None
                raise
            os.close(fd)
            fd = child
        return os.open(name or ".", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


@contextmanager
def mask(clone: Path):
    """An empty read-only directory in the clone's top directory (Bitbucket's docker service binds nothing else), to
    lay over a path the run container must not see; removed afterwards, whatever the container put in it."""
    clone = Path(os.path.normpath(clone))
    name = MASK_PREFIX + secrets.token_hex(8)
    top = Dir.open_clone(clone)
    try:
        os.mkdir(name, 0o555, dir_fd=top.fd)
        try:
            yield clone / name
        finally:
            with stopping.uninterrupted():
                top.remove(name)
    finally:
        top.close()


def remove_stale(clone: Path, export_dirs: list[Path]) -> None:
    """What a run killed before its cleanup left: masks in the clone's top directory and the run container's
    credential directory (which holds the step token) beside each export directory. Removed before anything else,
    so nothing mounts them."""
    clone = Path(os.path.normpath(clone))
    top = Dir.open_clone(clone)
    try:
        for name in top.names():
            if name.startswith(MASK_PREFIX):
                log.debug(f"Removing {clone / name}, left by an earlier run of the pipe")
                top.remove(name)
    finally:
        top.close()
    for export_dir in export_dirs:
        _remove_run_dir(clone, export_dir.with_name(RUN_DIR))


def _remove_run_dir(clone: Path, run_dir: Path) -> None:
    try:
        with parent_of(clone, run_dir, create=False) as parent:
            parent.remove(run_dir.name)
    except (FileNotFoundError, PipeError):
        pass  # nothing there; or a storage path the pipe cannot use, refused with its reason where it would be used
