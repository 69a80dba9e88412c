import numpy as np
import pytest

from videomdm.skeleton import (BLAZEPOSE_33, COCO_17, H36M_17, LAFAN_22, SKELETONS, SMPL_22, Skeleton, get_skeleton,
                               joint_map)


def test_smpl22_matches_humanml3d_tree():
    assert SMPL_22.num_joints == 22
    assert SMPL_22.parents == (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
    assert SMPL_22.foot_indices == ([7, 10], [8, 11])
    assert SMPL_22.facing_indices == [2, 1, 17, 16]
    assert SMPL_22.chain_indices == [[0, 2, 5, 8, 11], [0, 1, 4, 7, 10], [0, 3, 6, 9, 12, 15],
                                     [9, 14, 17, 19, 21], [9, 13, 16, 18, 20]]


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_mirror_permutation_is_an_involution_that_swaps_sides(skeleton):
    perm = skeleton.mirror_permutation
    assert np.array_equal(perm[perm], np.arange(skeleton.num_joints))
    for left, right in skeleton.left_right:
        assert perm[skeleton.index(left)] == skeleton.index(right)


def test_lafan_to_smpl_is_one_to_one_and_preserves_the_tree():
    m = joint_map(LAFAN_22, SMPL_22)
    assert m.present.all() and not m.derived.any()
    src = np.array([s[0] for s in m.sources])
    assert sorted(src.tolist()) == list(range(22))
    # The parent of every mapped joint is the mapped parent.
    for j, p in enumerate(SMPL_22.parents):
        if p >= 0:
            assert LAFAN_22.parents[src[j]] == src[p]
    # Round trip through the inverse map is the identity.
    x = np.random.default_rng(0).normal(size=(5, 22, 3))
    y, _ = joint_map(SMPL_22, LAFAN_22).apply(m.apply(x)[0])
    np.testing.assert_allclose(y, x)


def test_coco_to_smpl_marks_missing_and_derives_pelvis_from_hips():
    m = joint_map(COCO_17, SMPL_22)
    x = np.random.default_rng(1).normal(size=(3, 17, 2))
    y, present = m.apply(x, fill=np.nan)
    pelvis = SMPL_22.index("pelvis")
    np.testing.assert_allclose(y[:, pelvis], (x[:, COCO_17.index("left_hip")] + x[:, COCO_17.index("right_hip")]) / 2)
    assert m.derived[pelvis]
    for name in ("spine1", "spine2", "spine3", "left_collar", "left_foot"):
        assert not present[SMPL_22.index(name)]
        assert np.isnan(y[:, SMPL_22.index(name)]).all()
    np.testing.assert_allclose(y[:, SMPL_22.index("left_knee")], x[:, COCO_17.index("left_knee")])


@pytest.mark.parametrize("pair", [("blazepose33", "smpl22"), ("blazepose33", "coco17"), ("h36m17", "smpl22"),
                                  ("smpl22", "h36m17"), ("smpl22", "coco17"), ("h36m17", "coco17")])
def test_maps_keep_left_and_right(pair):
    src, dst = get_skeleton(pair[0]), get_skeleton(pair[1])
    m = joint_map(src, dst)
    for j, sources in enumerate(m.sources):
        name = dst.joint_names[j]
        for i in sources:
            source_name = src.joint_names[i]
            if len(sources) == 1 and ("left" in name or "right" in name):
                assert ("left" in name) == ("left" in source_name), (name, source_name)


def test_unknown_map_and_joint_are_errors():
    with pytest.raises(KeyError, match="no joint map"):
        joint_map(COCO_17, BLAZEPOSE_33)
    with pytest.raises(KeyError, match="no joint 'tail'"):
        SMPL_22.index("tail")
    with pytest.raises(KeyError, match="unknown skeleton"):
        get_skeleton("mixamo")
    with pytest.raises(ValueError, match="joints"):
        joint_map(COCO_17, SMPL_22).apply(np.zeros((4, 18, 2)))


def test_invalid_skeleton_definitions_are_rejected():
    with pytest.raises(ValueError, match="precede"):
        Skeleton("bad", ("a", "b"), (-1, 1))
    with pytest.raises(ValueError, match="duplicate"):
        Skeleton("bad", ("a", "a"), (-1, 0))


def test_h36m_tree():
    assert H36M_17.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
