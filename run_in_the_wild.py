#!/usr/bin/env python
"""Train or evaluate a lifter for in-the-wild videos: COCO-17 2D detections in, Human3.6M 3D out.

    python run_in_the_wild.py -k detectron_pt_coco -f 243 -b 160 --MAE --train 1 --layers 3 -tds 2 \\
        -tmr 0.8 -smn 2 --lr 0.0001 -lrd 0.97                                        # stage I
    python run_in_the_wild.py -k detectron_pt_coco -f 243 -b 160 --train 1 --layers 3 -tds 2 \\
        --lr 0.0007 -lrd 0.97 --MAE_reload 1 --previous_dir checkpoint/best.pt       # stage II
    python run_in_the_wild.py -k detectron_pt_coco -f 243 -tds 2 --reload 1 \\
        --previous_dir checkpoint/PSTMOS_no_refine_48_5137_in_the_wild.pth           # evaluate
    python run_in_the_wild.py -d synthetic -arc 3,3,3 -e 10                           # no download

It is run.py reading data_2d_h36m_detectron_pt_coco.npz by default (x, y kept, the probability
channel dropped, COCO pairs flipping the 2D and Human3.6M pairs the 3D). To lift your own video's
keypoints with the trained model, see render.py --input-keypoints and README "In the wild".
"""
import sys

from common.cli.runner import ScriptPreset, main

PRESET = ScriptPreset(script='run_in_the_wild.py', dataset='h36m', keypoints='detectron_pt_coco',
                      description='Train or evaluate a lifter on COCO-17 detections of Human3.6M (in the wild).')

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:], PRESET))
