import numpy as np

from streams.vision.render import draw_skeleton


def test_draws_visible_keypoints_and_bones_only() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    kps = np.zeros((33, 4), np.float32)
    kps[11] = (50, 50, 0.9, 0.9)  # left shoulder
    kps[13] = (50, 150, 0.9, 0.9)  # left elbow: bone 11-13 is drawn
    kps[12] = (150, 50, 0.1, 0.9)  # right shoulder, not visible
    draw_skeleton(image, kps)
    assert image[100, 50].any()  # on the bone between shoulder and elbow
    assert image[50, 50].any()
    assert not image[50, 150].any()  # invisible point left untouched
    assert not image[50, 100].any()  # no bone to the invisible shoulder
