"""ImageFolder (Keras flow_from_directory semantics) on a generated tree of PNG and JPEG files."""

import os
import warnings

import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnnjax.data.folder import CorruptImageError, ImageFolder, load_image
from cnnjax.data.pipeline import eval_batches, train_batches
from cnnjax.data.sources import get_dataset

COLORS = {"dog": (200, 30, 40), "cat": (20, 180, 60), "bird": (10, 40, 220)}


def _save_rgb(path, color, size=(12, 10)):  # size = (width, height)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def tree(tmp_path):
    """root/{dog,cat,bird}: PNG + JPEG + palette + RGBA + grayscale + a nested folder + a text file."""
    root = tmp_path / "root"
    for name, color in COLORS.items():
        d = root / name
        (d / "nested").mkdir(parents=True)
        for i in range(4):
            _save_rgb(d / f"{name}{i}.png", color, size=(12 + i, 10))
        _save_rgb(d / f"{name}_photo.JPG", color, size=(16, 16))
        pal = Image.new("P", (8, 8), 0)
        pal.putpalette(list(color) + [0, 0, 0] * 255)
        pal.save(d / f"{name}_palette.png", transparency=0)
        rgba = Image.new("RGBA", (9, 9), (*color, 0))  # fully transparent: Keras drops alpha
        rgba.save(d / f"{name}_rgba.png")
        Image.new("L", (6, 6), 99).save(d / "nested" / f"{name}_gray.png")
        (d / "notes.txt").write_text("not an image")
        (d / ".DS_Store").write_bytes(b"\x00")
    return root


def test_class_indices_from_sorted_folder_names(tree):
    ds = ImageFolder(tree, target_size=(7, 5))
    assert ds.class_indices == {"bird": 0, "cat": 1, "dog": 2}
    assert len(ds) == 3 * 8  # 4 png + jpg + palette + rgba + nested gray; txt and dot-files ignored
    assert all(not f.endswith(".txt") for f in ds.filenames)
    assert os.path.join("cat", "nested", "cat_gray.png") in ds.filenames
    # ordered by class, then by path; labels follow the folder
    assert [f.split(os.sep)[0] for f in ds.filenames] == ["bird"] * 8 + ["cat"] * 8 + ["dog"] * 8
    assert ds.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert ds.filenames == sorted(ds.filenames, key=lambda f: (ds.class_indices[f.split(os.sep)[0]], f))


def test_explicit_classes_order(tree):
    ds = ImageFolder(tree, target_size=(4, 4), classes=["dog", "cat"])
    assert ds.class_indices == {"dog": 0, "cat": 1}
    assert len(ds) == 16


@pytest.mark.parametrize("mode,channels", [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_resize_and_color_modes(tree, mode, channels):
    ds = ImageFolder(tree, target_size=(7, 5), color_mode=mode)
    assert ds.image_shape == (7, 5, channels)
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (7, 5, channels) and image.dtype == np.uint8
    batch = ds.get_batch([0, 5, 23])
    assert batch["image"].shape == (3, 7, 5, channels) and batch["label"].tolist() == [0, 0, 2]


def test_color_conversions(tree):
    rgb = ImageFolder(tree, target_size=(4, 4), color_mode="rgb")
    gray = ImageFolder(tree, target_size=(4, 4), color_mode="grayscale")
    for i, name in enumerate(rgb.filenames):
        cls = name.split(os.sep)[0]
        image, _ = rgb[i]
        g, _ = gray[i]
        if name.endswith("_gray.png"):
            assert (image == 99).all() and (g == 99).all()  # L -> RGB replicates the channel
            continue
        r, gg, b = COLORS[cls]
        if name.endswith(".JPG"):  # lossy
            assert np.abs(image.astype(int) - COLORS[cls]).max() <= 6
            continue
        # PNG, palette (through RGBA) and RGBA (alpha dropped, like Keras) keep the exact colour
        np.testing.assert_array_equal(image, np.broadcast_to(np.array(COLORS[cls], np.uint8), (4, 4, 3)), err_msg=name)
        expected_l = int((r * 299 + gg * 587 + b * 114 + 500) // 1000)  # ITU-R 601-2 luma, Pillow's "L"
        assert abs(int(g[0, 0, 0]) - expected_l) <= 1, name


def test_resize_matches_pillow(tmp_path):
    (tmp_path / "a").mkdir()
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a" / "x.png")
    for interp, resample in [("nearest", Image.Resampling.NEAREST), ("bilinear", Image.Resampling.BILINEAR)]:
        ds = ImageFolder(tmp_path, target_size=(8, 11), interpolation=interp)
        expected = np.asarray(Image.fromarray(array).resize((11, 8), resample))
        np.testing.assert_array_equal(ds[0][0], expected)


def test_16_bit_grayscale_is_scaled(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((5, 5), 65535, np.uint16)).save(tmp_path / "a" / "deep.png")
    image = load_image(str(tmp_path / "a" / "deep.png"), None, "grayscale")
    assert image.shape == (5, 5, 1) and (image == 255).all()


def _many(tmp_path, per_class=(10, 7, 5)):
    for c, n in zip("abc", per_class):
        (tmp_path / c).mkdir(parents=True)
        for i in range(n):
            _save_rgb(tmp_path / c / f"{i:02d}.png", (i, i, i), size=(4, 4))
    return tmp_path


@pytest.mark.parametrize("split", [0.2, 0.5])
def test_validation_split_disjoint_complete_stable(tmp_path, split):
    root = _many(tmp_path)
    kw = dict(target_size=(4, 4), validation_split=split, seed=3)
    train, val = ImageFolder(root, subset="training", **kw), ImageFolder(root, subset="validation", **kw)
    every = ImageFolder(root, target_size=(4, 4))
    assert not set(train.filenames) & set(val.filenames)
    assert sorted(train.filenames + val.filenames) == sorted(every.filenames)
    for c, n in zip("abc", (10, 7, 5)):  # stratified: floor(split * n) of every class
        assert sum(f.startswith(c) for f in val.filenames) == int(split * n)
    again = ImageFolder(root, subset="validation", **kw)
    assert again.filenames == val.filenames
    other = ImageFolder(root, subset="validation", **{**kw, "seed": 4})
    assert other.filenames != val.filenames
    assert train.class_indices == val.class_indices == every.class_indices
    for i, f in enumerate(val.filenames):  # labels follow the files
        assert val.labels[i] == val.class_indices[f.split(os.sep)[0]]


def test_seed_none_is_keras_order(tmp_path):
    root = _many(tmp_path)
    val = ImageFolder(root, target_size=(4, 4), validation_split=0.3, subset="validation", seed=None)
    assert val.filenames == [os.path.join("a", "00.png"), os.path.join("a", "01.png"), os.path.join("a", "02.png"),
                             os.path.join("b", "00.png"), os.path.join("b", "01.png"), os.path.join("c", "00.png")]


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"root=.*nowhere.*does not exist"):
        ImageFolder(tmp_path / "nowhere")


def test_root_without_class_folders(tmp_path):
    _save_rgb(tmp_path / "x.png", (1, 2, 3))
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(tmp_path)


def test_empty_class_folder(tree):
    (tree / "empty").mkdir()
    (tree / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder .*empty.* contains no image files"):
        ImageFolder(tree)


def test_corrupt_image_names_the_file(tree):
    (tree / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = ImageFolder(tree, target_size=(4, 4))
    i = ds.filenames.index(os.path.join("cat", "broken.png"))
    with pytest.raises(CorruptImageError, match=r"broken\.png"):
        ds[i]
    with pytest.raises(CorruptImageError, match=r"broken\.png"):
        list(eval_batches(ds, 8))


def test_truncated_jpeg_names_the_file(tree):
    data = (tree / "dog" / "dog_photo.JPG").read_bytes()
    (tree / "dog" / "cut.jpg").write_bytes(data[: len(data) // 3])
    ds = ImageFolder(tree, target_size=(4, 4))
    with pytest.raises(CorruptImageError, match=r"cut\.jpg"):
        ds[ds.filenames.index(os.path.join("dog", "cut.jpg"))]


def test_unreadable_file_names_the_file(tree):
    os.symlink(tree / "does-not-exist.png", tree / "bird" / "dangling.png")
    ds = ImageFolder(tree, target_size=(4, 4))
    with pytest.raises(CorruptImageError, match=r"dangling\.png"):
        ds[ds.filenames.index(os.path.join("bird", "dangling.png"))]


def test_skip_corrupt_warns_and_drops(tree):
    (tree / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file.*broken\.png"):
        ds = ImageFolder(tree, target_size=(4, 4), skip_corrupt=True)
    assert len(ds) == 24 and os.path.join("cat", "broken.png") not in ds.filenames
    assert ds.get_batch(np.arange(24))["image"].shape == (24, 4, 4, 3)
    with warnings.catch_warnings():  # a clean tree gives no warning
        warnings.simplefilter("error")
        (tree / "cat" / "broken.png").unlink()
        ImageFolder(tree, target_size=(4, 4), skip_corrupt=True)


@pytest.mark.parametrize("kwargs,match", [
    (dict(color_mode="hsv"), "color_mode='hsv'"),
    (dict(target_size=(0, 4)), "target_size"),
    (dict(validation_split=1.0), "validation_split"),
    (dict(subset="training"), "needs validation_split > 0"),
    (dict(subset="test", validation_split=0.2), "subset='test'"),
    (dict(interpolation="cubic"), "interpolation='cubic'"),
    (dict(classes=["cat", "cow"]), "class folder 'cow' does not exist"),
])
def test_bad_arguments(tree, kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        ImageFolder(tree, **kwargs)


def test_pipeline_threads_give_the_same_batches(tree):
    ds = ImageFolder(tree, target_size=(6, 6))
    plain = list(train_batches(ds, 5, seed=2, epoch=1, start_batch=1))
    threaded = list(train_batches(ds, 5, seed=2, epoch=1, start_batch=1, num_threads=3))
    assert len(plain) == len(threaded) == 24 // 5 - 1
    for a, b in zip(plain, threaded, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    seen = np.concatenate([b["label"][b["mask"] > 0] for b in eval_batches(ds, 7, num_threads=2)])
    np.testing.assert_array_equal(seen, ds.labels)


def _folder_config(root, **kw):
    c = ml_collections.ConfigDict({"name": f"folder:{root}", "target_size": (8, 8), "color_mode": "grayscale",
                                   "validation_split": 0.0, "test_dir": "", "split_seed": 0})
    c.update(kw)
    return c


def test_get_dataset_folder_with_validation_split(tmp_path):
    root = _many(tmp_path)
    ds = get_dataset(_folder_config(root, validation_split=0.4))
    assert ds.num_classes == 3 and ds.class_names == ("a", "b", "c")
    assert ds.image_shape == (8, 8, 1)
    assert len(ds.train) + len(ds.validation) == 22 and ds.test is ds.validation
    assert not set(ds.train.filenames) & set(ds.validation.filenames)


def test_get_dataset_folder_with_test_dir(tmp_path):
    train_root = _many(tmp_path / "train")
    test_root = _many(tmp_path / "test", per_class=(2, 2, 2))
    ds = get_dataset(_folder_config(train_root, test_dir=str(test_root)))
    assert ds.validation is None and len(ds.test) == 6 and len(ds.train) == 22
    (test_root / "d").mkdir()
    _save_rgb(test_root / "d" / "x.png", (0, 0, 0))
    with pytest.raises(ValueError, match="must be the same"):
        get_dataset(_folder_config(train_root, test_dir=str(test_root)))


def test_get_dataset_folder_needs_a_test_set(tmp_path):
    root = _many(tmp_path)
    with pytest.raises(ValueError, match=r"needs a test set.*validation_split.*test_dir"):
        get_dataset(_folder_config(root))


def test_get_dataset_folder_cache_reads_into_memory(tmp_path):
    root = _many(tmp_path)
    ds = get_dataset(_folder_config(root, validation_split=0.2, cache=True, train_limit=10))
    assert ds.train.images.shape == (10, 8, 8, 1) and ds.train.images.dtype == np.uint8


# ---------------------------------------------------------------- checked once, before training (issue 15)

def test_symlink_cycle_is_refused_naming_the_link(tmp_path):
    root = _many(tmp_path)
    os.symlink(root / "a", root / "a" / "loop")  # a/loop -> a: os.walk(followlinks=True) would go round
    with pytest.raises(ValueError, match=r"image folder '.*a/loop' is '.*a' again \(a symlink cycle\)"):
        ImageFolder(root, target_size=(4, 4))


def test_two_links_to_one_folder_are_refused(tmp_path):
    root = _many(tmp_path / "root")
    extra = tmp_path / "extra"
    extra.mkdir()
    _save_rgb(extra / "x.png", (1, 1, 1))
    os.symlink(extra, root / "b" / "one")
    os.symlink(extra, root / "b" / "two")
    with pytest.raises(ValueError, match=r"'.*b/two' is '.*b/one' again \(a second link to one folder\)"):
        ImageFolder(root, target_size=(4, 4))


def test_a_linked_folder_reached_once_is_followed(tmp_path):
    root = _many(tmp_path / "root")
    extra = tmp_path / "extra"
    extra.mkdir()
    _save_rgb(extra / "x.png", (1, 1, 1))
    os.symlink(extra, root / "c" / "more")
    ds = ImageFolder(root, target_size=(4, 4))
    assert len(ds) == 23 and os.path.join("c", "more", "x.png") in ds.filenames


def test_folder_dataset_with_one_class_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(4):
        _save_rgb(tmp_path / "only" / f"{i}.png", (i, i, i), size=(4, 4))
    with pytest.raises(ValueError, match=r"has 1 class folder\(s\) \['only'\]; a classifier needs at least 2"):
        get_dataset(_folder_config(tmp_path, validation_split=0.5))


def test_unreadable_images_are_named_when_the_data_set_is_loaded(tmp_path):
    root = _many(tmp_path)
    (root / "b" / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "c" / "zz.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match=r"2 of 23 image file\(s\) in .* cannot be read: b/03\.png .*; "
                                                r"c/zz\.jpg .*set dataset\.skip_corrupt=True to skip them"):
        get_dataset(_folder_config(root, validation_split=0.0, test_dir=str(root)))
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file"):  # or skipped, and listed
        ds = get_dataset(_folder_config(root, test_dir=str(root), skip_corrupt=True))
    assert len(ds.train) == 21
    lazy = get_dataset(_folder_config(root, test_dir=str(root), check_images=False))  # opted out: read lazily
    assert len(lazy.train) == 23
