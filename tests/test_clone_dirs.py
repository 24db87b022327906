"""pipe.clone_dirs on hostile ground: trees too deep for recursion or PATH_MAX, modes, links out of the clone, FIFOs
and whatever a container wrote into a mask are removed without touching anything else; stale directories are found;
the way down refuses other users' directories and links, and repairs writable ones."""

import hashlib
import os
import resource
import stat
import subprocess
import traceback
from pathlib import Path

import pytest

from pipe import clone_dirs
from pipe.clone_dirs import MASK_PREFIX, RUN_DIR, Dir
from pipe.errors import PipeError

OTHER_UID = 12345
DEPTH = 1500
LEVEL = "level-0123456789"  # 1,500 of these make a path far past PATH_MAX


@pytest.fixture(autouse=True)
def _as_root():
    if os.geteuid() != 0:
        pytest.skip("these tests chown to another user and drop to it: they run as root")


@pytest.fixture
def clone(tmp_path):
    directory = tmp_path / "clone"
    directory.mkdir()
    return directory


@pytest.fixture
def outside(tmp_path):
    """Something outside the clone that links inside it point at: it must survive every removal untouched."""
    directory = tmp_path / "outside"
    (directory / "sub").mkdir(parents=True)
    (directory / "secret.txt").write_text("keep me")
    (directory / "sub" / "nested.txt").write_text("keep me too")
    os.chmod(directory / "sub", 0o750)
    return directory


def snapshot(root: Path) -> dict:
    """Every entry below root: its kind, mode, and content or link target (links never followed)."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = os.lstat(path)
        kind = stat.S_IFMT(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            detail = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            detail = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            detail = None
        found[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), info.st_uid, detail)
    return found


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def remove(clone: Path, name: str) -> None:
    top = Dir.open_clone(clone)
    try:
        top.remove(name)
    finally:
        top.close()


def build_deep(parent: Path, name: str, depth: int) -> None:
    """`depth` nested directories below parent/name, made relative to each level's descriptor (no long path), a file
    at every 100th level and at the bottom."""
    os.mkdir(parent / name)
    fd = os.open(parent / name, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir(LEVEL, dir_fd=fd)
            below = os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
            if level % 100 == 0 or level == depth - 1:
                file = os.open("file.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
                os.write(file, b"deep")
                os.close(file)
    finally:
        os.close(fd)


def as_user(uid: int, work) -> str | None:
    """Run work() in a child process that has dropped root for `uid`; the child's traceback, or None."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            work()
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(write_end, traceback.format_exc().encode()[-4000:])
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        text = report.read().decode()
    _, status = os.waitpid(pid, 0)
    return text or (None if os.waitstatus_to_exitcode(status) == 0 else f"exit status {status}")


# --- removal -------------------------------------------------------------------------------------------------

@pytest.fixture
def deep_leftovers(clone):
    """Whatever a failed removal leaves is removed by GNU rm (fts, any depth): pytest's own clean-up of old temporary
    directories recurses, and a tree this deep would break later sessions."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", str(clone)], check=False)


def test_a_tree_1500_levels_deep_is_removed_with_one_directory_open_at_a_time(clone, deep_leftovers):
    build_deep(clone, "deep", DEPTH)
    (clone / "sibling.txt").write_text("stays")
    assert len(str(clone)) + DEPTH * (len(LEVEL) + 1) > os.pathconf("/", "PC_PATH_MAX")
    before = open_fds()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + 16, hard))  # a descriptor per level would run out
    try:
        remove(clone, "deep")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sorted(os.listdir(clone)) == ["sibling.txt"]
    assert open_fds() == before


def build_hostile(top: Path, outside: Path) -> None:
    """What a run container may leave: odd modes, links out of the clone, FIFOs, sockets' cousins."""
    (top / "locked" / "inner").mkdir(parents=True)
    (top / "locked" / "inner" / "f.txt").write_text("x")
    (top / "locked" / "g.txt").write_text("y")
    (top / "readonly" / "deeper").mkdir(parents=True)
    (top / "readonly" / "deeper" / "h.txt").write_text("z")
    (top / "readonly" / "i.txt").write_text("w")
    os.symlink(outside, top / "link-to-dir")
    os.symlink(outside / "secret.txt", top / "link-to-file")
    os.symlink(outside / "sub", top / "readonly" / "link-to-sub")
    os.symlink("/nonexistent/target", top / "dangling")
    os.mkfifo(top / "fifo")
    os.mkfifo(top / "readonly" / "fifo")
    os.chmod(top / "readonly" / "i.txt", 0o000)
    os.chmod(top / "locked" / "inner", 0o000)
    os.chmod(top / "locked", 0o000)
    os.chmod(top / "readonly" / "deeper", 0o500)
    os.chmod(top / "readonly", 0o500)


def test_modes_links_and_fifos_are_removed_and_nothing_outside_is_touched(clone, outside):
    (clone / "gcp").mkdir()
    build_hostile(clone / "gcp", outside)
    (clone / "src.txt").write_text("source")
    kept, outside_before = snapshot(clone), snapshot(outside)
    remove(clone, "gcp")
    assert not os.path.lexists(clone / "gcp")
    assert snapshot(clone) == {k: v for k, v in kept.items() if not k.startswith("gcp")}
    assert snapshot(outside) == outside_before


@pytest.mark.parametrize("kind", ["link-to-dir", "link-to-file", "fifo", "file", "missing"])
def test_a_top_entry_that_is_no_directory_is_unlinked_only(clone, outside, kind):
    entry = clone / "gcp"
    if kind == "link-to-dir":
        os.symlink(outside, entry)
    elif kind == "link-to-file":
        os.symlink(outside / "secret.txt", entry)
    elif kind == "fifo":
        os.mkfifo(entry)
    elif kind == "file":
        entry.write_text("x")
    before = snapshot(outside)
    remove(clone, "gcp")
    assert not os.path.lexists(entry)
    assert snapshot(outside) == before


@pytest.mark.parametrize("mode", [0o000, 0o500])
def test_modes_set_by_the_container_are_taken_back_by_a_non_root_owner(tmp_path, mode):
    clone = tmp_path / "clone"
    (clone / "gcp" / "dir" / "inner").mkdir(parents=True)
    (clone / "gcp" / "dir" / "inner" / "f.txt").write_text("x")
    (clone / "gcp" / "dir" / "g.txt").write_text("y")
    for path in [clone, *clone.rglob("*")]:
        os.lchown(path, OTHER_UID, OTHER_UID)
    os.chmod(clone / "gcp" / "dir" / "inner", mode)
    os.chmod(clone / "gcp" / "dir", mode)
    top = Dir.open_clone(clone)  # opened as root: the child needs no way through pytest's 0700 directories
    try:
        failure = as_user(OTHER_UID, lambda: top.remove("gcp"))
    finally:
        top.close()
    assert failure is None, failure
    assert os.listdir(clone) == []


def test_a_non_root_owner_removes_an_ordinary_tree(tmp_path):
    """The same removal as a non-root owner works when the modes are ordinary (the child process itself is sound)."""
    clone = tmp_path / "clone"
    (clone / "gcp" / "dir" / "inner").mkdir(parents=True)
    (clone / "gcp" / "dir" / "inner" / "f.txt").write_text("x")
    os.mkfifo(clone / "gcp" / "dir" / "fifo")
    for path in [clone, *clone.rglob("*")]:
        os.lchown(path, OTHER_UID, OTHER_UID)
    top = Dir.open_clone(clone)
    try:
        failure = as_user(OTHER_UID, lambda: top.remove("gcp"))
    finally:
        top.close()
    assert failure is None, failure
    assert os.listdir(clone) == []


def test_a_mask_is_removed_with_whatever_was_written_into_it(clone, outside):
    (clone / "src.txt").write_text("source")
    kept, outside_before = snapshot(clone), snapshot(outside)
    before = open_fds()
    with clone_dirs.mask(clone) as empty:
        assert empty.parent == clone and empty.name.startswith(MASK_PREFIX)
        assert stat.S_IMODE(os.stat(empty).st_mode) == 0o555 and os.listdir(empty) == []
        build_hostile(empty, outside)  # the run container wrote there through its bind (root ignores 0555)
        build_deep(empty, "deep", 200)
    assert snapshot(clone) == kept
    assert snapshot(outside) == outside_before
    assert open_fds() == before


def test_a_mask_is_removed_when_the_run_fails(clone):
    with pytest.raises(RuntimeError), clone_dirs.mask(clone) as empty:
        (empty / "left.txt").write_text("x")
        raise RuntimeError("the run failed")
    assert os.listdir(clone) == []


# --- remove_stale ----------------------------------------------------------------------------------------------

def test_remove_stale_takes_masks_and_the_run_dir_and_nothing_else(clone, outside):
    export = clone / "store" / "gcp"
    export.mkdir(parents=True)
    (export / "credentials.json").write_text("{}")
    (clone / "store" / RUN_DIR).mkdir()
    (clone / "store" / RUN_DIR / "token").write_text("step token")
    os.chmod(clone / "store" / RUN_DIR, 0o000)
    (clone / f"{MASK_PREFIX}0123456789abcdef").mkdir(mode=0o555)
    (clone / f"{MASK_PREFIX}fedcba9876543210" / "inner").mkdir(parents=True)
    os.symlink(outside, clone / f"{MASK_PREFIX}fedcba9876543210" / "inner" / "out")
    (clone / f"{MASK_PREFIX}file").write_text("a file with the prefix")
    # look-alikes and places remove_stale does not own
    (clone / ".keyless-empty").mkdir()
    (clone / "keyless-empty-x").mkdir()
    (clone / "sub" / f"{MASK_PREFIX}nested").mkdir(parents=True)
    (clone / "store" / "gcp-run-not").mkdir()
    (clone / "other" / RUN_DIR).mkdir(parents=True)
    stale = [f"{MASK_PREFIX}0123456789abcdef", f"{MASK_PREFIX}fedcba9876543210", f"{MASK_PREFIX}file", f"store/{RUN_DIR}"]
    expected = {k: v for k, v in snapshot(clone).items() if not any(k == s or k.startswith(s + "/") for s in stale)}
    outside_before = snapshot(outside)
    clone_dirs.remove_stale(clone, [export])
    assert snapshot(clone) == expected
    assert snapshot(outside) == outside_before


def test_remove_stale_creates_nothing_where_the_storage_path_is_missing(clone):
    (clone / "src.txt").write_text("x")
    before = snapshot(clone)
    clone_dirs.remove_stale(clone, [clone / "not" / "there" / "gcp"])
    clone_dirs.remove_stale(clone, [])
    assert snapshot(clone) == before


def test_remove_stale_never_follows_a_link_on_the_way_to_the_run_dir(clone, outside):
    (outside / RUN_DIR).mkdir()
    (outside / RUN_DIR / "precious.txt").write_text("not ours")
    os.symlink(outside, clone / "store")
    before = snapshot(outside)
    clone_dirs.remove_stale(clone, [clone / "store" / "gcp"])
    assert snapshot(outside) == before
    assert os.path.islink(clone / "store")


def test_remove_stale_leaves_a_run_dir_below_another_users_directory(clone):
    (clone / "store" / RUN_DIR).mkdir(parents=True)
    os.chown(clone / "store", OTHER_UID, OTHER_UID)
    clone_dirs.remove_stale(clone, [clone / "store" / "gcp"])  # refused on the way, quietly: used later, it is explained
    assert (clone / "store" / RUN_DIR).is_dir()


# --- parent_of: the way down ------------------------------------------------------------------------------------

def test_parent_of_creates_the_way_with_the_intended_mode(clone):
    old = os.umask(0o077)  # the pipe's own umask
    try:
        before = open_fds()
        with clone_dirs.parent_of(clone, clone / "a" / "b" / "gcp") as parent:
            assert parent.path == clone / "a" / "b"
            assert os.path.samestat(os.fstat(parent.fd), os.stat(clone / "a" / "b"))
        assert open_fds() == before
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(clone / "a").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(clone / "a" / "b").st_mode) == 0o755
    assert not (clone / "a" / "b" / "gcp").exists()


def test_parent_of_refuses_a_directory_owned_by_another_user(clone):
    (clone / "a").mkdir()
    os.chown(clone / "a", OTHER_UID, OTHER_UID)
    before = open_fds()
    with pytest.raises(PipeError) as refused:
        with clone_dirs.parent_of(clone, clone / "a" / "b" / "gcp"):
            pytest.fail("the way down was trusted")
    assert f"belongs to user {OTHER_UID}, not to the pipe's user 0" in refused.value.message
    assert f"rm -rf {clone / 'a'}" in refused.value.message
    assert os.listdir(clone / "a") == []  # nothing created below it
    assert open_fds() == before


@pytest.mark.parametrize("mode, repaired", [(0o777, 0o755), (0o775, 0o755), (0o757, 0o755), (0o1777, 0o1755), (0o770, 0o750)])
def test_parent_of_repairs_a_writable_directory(clone, mode, repaired):
    (clone / "a").mkdir()
    os.chmod(clone / "a", mode)
    with clone_dirs.parent_of(clone, clone / "a" / "gcp"):
        pass
    assert stat.S_IMODE(os.stat(clone / "a").st_mode) == repaired


def test_parent_of_repairs_nothing_when_told_not_to(clone):
    (clone / "a" / "b").mkdir(parents=True)
    os.chmod(clone / "a", 0o777)
    os.chmod(clone / "a" / "b", 0o775)
    with clone_dirs.parent_of(clone, clone / "a" / "b" / "gcp", create=False, repair=False):
        pass
    assert stat.S_IMODE(os.stat(clone / "a").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(clone / "a" / "b").st_mode) == 0o775


def test_parent_of_still_refuses_another_users_directory_without_repair(clone):
    (clone / "a").mkdir()
    os.chown(clone / "a", OTHER_UID, OTHER_UID)
    with pytest.raises(PipeError, match="belongs to user"):
        with clone_dirs.parent_of(clone, clone / "a" / "gcp", create=False, repair=False):
            pass


def test_parent_of_without_create_creates_nothing(clone):
    with pytest.raises(FileNotFoundError):
        with clone_dirs.parent_of(clone, clone / "a" / "b" / "gcp", create=False):
            pass
    assert os.listdir(clone) == []


def test_parent_of_never_follows_a_link_on_the_way(clone, outside):
    os.symlink(outside, clone / "a")
    before = snapshot(outside)
    with pytest.raises(PipeError) as refused:
        with clone_dirs.parent_of(clone, clone / "a" / "sub" / "gcp"):
            pass
    assert f"{clone / 'a'} is a symbolic link" in refused.value.message
    assert snapshot(outside) == before


def test_parent_of_refuses_a_file_on_the_way(clone):
    (clone / "a").write_text("a file")
    with pytest.raises(PipeError, match="is not a directory"):
        with clone_dirs.parent_of(clone, clone / "a" / "gcp"):
            pass
    assert (clone / "a").read_text() == "a file"


# --- fresh ------------------------------------------------------------------------------------------------------

def test_fresh_refuses_a_planted_link_and_leaves_it_and_its_target(clone, outside):
    os.symlink(outside, clone / "gcp")
    before = snapshot(outside)
    top = Dir.open_clone(clone)
    try:
        with pytest.raises(PipeError) as refused:
            top.fresh("gcp")
    finally:
        top.close()
    assert f"{clone / 'gcp'} is a symbolic link" in refused.value.message and "remove it from the repository" in refused.value.message
    assert os.readlink(clone / "gcp") == str(outside)
    assert snapshot(outside) == before


@pytest.mark.parametrize("plant", ["file", "fifo", "dangling-link"])
def test_fresh_refuses_a_planted_file(clone, plant):
    target = clone / "gcp"
    if plant == "file":
        target.write_text("committed")
    elif plant == "fifo":
        os.mkfifo(target)
    else:
        os.symlink(clone / "nowhere", target)
    before = snapshot(clone)
    top = Dir.open_clone(clone)
    try:
        with pytest.raises(PipeError, match="is (a symbolic link|not a directory)"):
            top.fresh("gcp")
    finally:
        top.close()
    assert snapshot(clone) == before  # neither replaced nor written through
    assert not (clone / "nowhere").exists()


def test_fresh_empties_what_an_earlier_run_left(clone, outside):
    (clone / "gcp" / "old").mkdir(parents=True)
    (clone / "gcp" / "old" / "token").write_text("stale")
    os.symlink(outside, clone / "gcp" / "out")
    os.chmod(clone / "gcp", 0o777)
    before = snapshot(outside)
    top = Dir.open_clone(clone)
    try:
        fresh = top.fresh("gcp")
        try:
            fresh.write("credentials.json", "{}")
        finally:
            fresh.close()
    finally:
        top.close()
    assert os.listdir(clone / "gcp") == ["credentials.json"]
    assert stat.S_IMODE(os.stat(clone / "gcp").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(clone / "gcp" / "credentials.json").st_mode) == 0o600
    assert snapshot(outside) == before


def test_write_never_goes_through_a_planted_link(clone, outside):
    top = Dir.open_clone(clone)
    try:
        os.symlink(outside / "secret.txt", clone / "credentials.json")
        with pytest.raises(FileExistsError):
            top.write("credentials.json", "{}")
    finally:
        top.close()
    assert (outside / "secret.txt").read_text() == "keep me"
