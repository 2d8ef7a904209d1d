#!/usr/bin/env python
"""Train or evaluate a 2D-to-3D lifter on MPI-INF-3DHP (or its embedded synthetic stand-in).

    python run_3dhp.py -d synthetic -arc 3,3 -e 10                                   # train
    python run_3dhp.py -f 81 -b 160 --MAE --train 1 --layers 3 -tmr 0.7 -smn 2 --lr 0.0001 -lrd 0.97
    python run_3dhp.py -f 81 --reload 1 --previous_dir checkpoint/PSTMOS_no_refine_50_3203_3dhp.pth
    python run_3dhp.py -d mpii3d --model retnet --joint-related --uncausal --chunk-size 9 -f 600 -s 600 \\
        -lr 1e-4 --lr-decay 0.98 --random-shift -b 4 -l log/run -gpu 0,1

Datasets: 3dhp / mpii3d_univ (P-STMO's data_train_3dhp.npz + data_test_3dhp.npz, 17 joints),
mpii3d (PoseRetNet's data_3d_mpii3d.npz + data_2d_mpii3d_gt.npz, 14 joints), synthetic.
Evaluation prints the official test-set tables and writes mpii_3dhp_evaluation_sequencewise.csv
and inference_data.mat (for the official MATLAB scripts) into the checkpoint or log directory.
See ``--help`` for every flag.
"""
import sys

from common.cli.runner import ScriptPreset, main

PRESET = ScriptPreset(script='run_3dhp.py', dataset='3dhp',
                      description='Train or evaluate a 2D-to-3D pose lifter on MPI-INF-3DHP.',
                      dataset_aliases=(('synthetic', 'synthetic_3dhp'),))

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:], PRESET))
