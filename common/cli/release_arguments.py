"""The flag groups of the releases whose own scripts had flags of their own: Uplift-and-Upsample's
train.py / eval.py (read by common/cli/uplift_release.py) and Context-Aware PoseFormer's image models
(common/cli/image_runner.py). One --config serves both: the file's suffix decides who reads it."""
from common.cli.flag_types import POSITIVE_INT


def add_uplift_release_arguments(p):
    """Uplift-and-Upsample's train.py / eval.py flags, with their meaning (common/cli/uplift_release.py)."""
    g = p.add_argument_group('Uplift-and-Upsample release (its train.py / eval.py flags, with their meaning)')
    g.add_argument('--config', default=None, metavar='FILE',
                   help="configuration file; FILE.json: one of the release's config/*.json (the model, batch size, "
                        "epochs, learning rate and decay, weight decay, optimiser, EMA, flips); flags typed here win")
    g.add_argument('--weights', default=None, metavar='FILE',
                   help='.h5 weights of the release (or our .pt): evaluate them, or start training from them when '
                        'a training flag is given (--train_subset, --val_subset, --out_dir, --dataset amass, ...)')
    g.add_argument('--train_subset', default=None, metavar='NAME',
                   help='training subset: trainval (S1 S5 S6 S7 S8) or train (S1 S5 S6 S7); AMASS: train, '
                        'train_debug (default when training: train)')
    g.add_argument('--val_subset', default=None, metavar='NAME',
                   help='subset evaluated after every epoch: val (S8), none; AMASS: val (default: val)')
    g.add_argument('--test_subset', default=None, metavar='NAME',
                   help='test subset: test (S9 S11), none (default: test when evaluating --weights; when training, '
                        'evaluated after every epoch if --val_subset none)')
    g.add_argument('--dataset_val', default=None, metavar='h36m|amass',
                   help='dataset of the --val_subset when it is not the training dataset (-d)')
    g.add_argument('--h36m_path', default=None, metavar='FILE',
                   help='the Human3.6M 3D file data_3d_h36m.npz (its folder is read, like --root_path)')
    g.add_argument('--dataset_2d_path', '--dataset_2d', dest='dataset_2d_path', default=None, metavar='FILE',
                   help='the 2D file data_2d_h36m_<NAME>.npz, in the folder of --h36m_path (sets -k NAME)')
    g.add_argument('--amass_path', default=None, metavar='DIR',
                   help='with -d amass: the folder of the converted AMASS files [DATASET].npz (AMASS-to-3DHPE)')
    g.add_argument('--amass_frame_rate', type=POSITIVE_INT, default=None, metavar='R',
                   help='AMASS frames per second to train at, a divisor of the files\' rate (default: 50)')
    g.add_argument('--out_dir', default=None, metavar='DIR', help='checkpoints and logs go here (-c DIR -l DIR)')
    g.add_argument('--continue_training', nargs='?', const='True', default=None, metavar='True|False',
                   help='continue the training in --out_dir from its latest.pt')
    g.add_argument('--gpu_id', default=None, metavar='ID', help='the GPU to use (-gpu ID)')
    g.add_argument('--action_wise', dest='action_wise', action='store_const', const=True, default=None,
                   help='print the release\'s evaluation per action and the action-wise averages (the default)')
    g.add_argument('--frame_wise', dest='action_wise', action='store_const', const=False,
                   help='print the release\'s frame-wise evaluation only')


def add_image_model_arguments(p):
    """Flags of the models that lift from image features (Context-Aware PoseFormer)."""
    g = p.add_argument_group('image models (Context-Aware PoseFormer; -d h36m_toolbox or synthetic_images)')
    if '--config' not in p._option_string_actions:   # one --config for every release (suffix decides)
        g.add_argument('--config', default=None, metavar='FILE',
                       help="the release's configuration file; FILE.yaml: Context-Aware PoseFormer's "
                            "experiments/human36m/human36m.yaml, read as flags; flags typed on the command line win")
    g.add_argument('--backbone', choices=['hrnet_32', 'hrnet_48', 'cpn', 'hrnet_tiny'], default=None,
                   help='frozen 2D backbone; hrnet_tiny: a narrow one for first runs on a CPU '
                        '(default: the checkpoint\'s, else hrnet_32)')
    g.add_argument('--backbone-weights', default=None, metavar='FILE',
                   help="the backbone's COCO weights (pose_hrnet_w32_256x192.pth ...), or 'random' (synthetic data "
                        "only) (default: data/pretrained/coco/<the release's file>, as the release)")
    g.add_argument('--image-root', default=None, metavar='DIR',
                   help='folder of the s_XX_act_XX_subact_XX_ca_XX image folders (default: <root_path>/images)')
    g.add_argument('--train-labels', default=None, metavar='FILE',
                   help='H36M-Toolbox training labels (default: <root_path>/h36m_train.pkl)')
    g.add_argument('--test-labels', default=None, metavar='FILE',
                   help='H36M-Toolbox validation labels (default: <root_path>/h36m_validation.pkl)')
    g.add_argument('--feature-cache', default=None, metavar='DIR',
                   help='train (and evaluate) from backbone feature maps cached in DIR, built there first if '
                        'missing (default: run the backbone on every image)')
    g.add_argument('--cache-only', action='store_true', help='build the --feature-cache and stop')
    g.add_argument('--cache-dtype', choices=['float16', 'float32'], default='float16',
                   help='storage type of the cached maps')
    g.add_argument('--eval', action='store_true',
                   help="the release's --eval: evaluate -c DIR/best_epoch_<backbone>.bin, else DIR/best_epoch.bin "
                        "(DIR: checkpoint)")
    g.add_argument('--local_rank', '--local-rank', dest='local_rank', type=int, default=None, metavar='N',
                   help='set by python -m torch.distributed.launch (the LOCAL_RANK variable is what is read)')
