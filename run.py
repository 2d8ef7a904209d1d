#!/usr/bin/env python
"""Train or evaluate a 2D-to-3D lifter on Human3.6M (or the embedded synthetic dataset).

    python run.py -d synthetic -arc 3,3,3 -e 10                         # train
    python run.py -k cpn_ft_h36m_dbb -arc 3,3,3,3,3 -c checkpoint --evaluate pretrained_h36m_cpn.bin
    python run.py -f 243 -tds 2 --reload 1 --previous_dir checkpoint/PSTMOS_no_refine_28_4306_h36m_cpn.pth

See ``--help`` for every flag and README.md for the published commands.
"""
import sys

from common.cli.runner import ScriptPreset, main

PRESET = ScriptPreset(script='run.py', dataset='h36m',
                      description='Train or evaluate a 2D-to-3D pose lifter on Human3.6M.')

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:], PRESET))
