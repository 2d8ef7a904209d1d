"""--precision, --backend and --export: their flags, and from the parsed flags to the engine's calls."""
import argparse

from common.errors import UserError
from common.eval.backends import InferenceConfig, accelerate


def inference_config(args) -> InferenceConfig:
    return InferenceConfig(precision=args.precision, backend=args.backend)


def reject_when_training(args):
    """These flags change how a loaded model infers: training runs refuse them."""
    given = [flag for flag, on in (('--precision', args.precision != 'fp32'), ('--backend', args.backend != 'eager'),
                                   ('--export', args.export is not None)) if on]
    if given:
        raise UserError(f"{', '.join(given)} apply to evaluation and rendering: add --evaluate FILE (or "
                        f"--reload 1 --previous_dir FILE), or use --amp / --compile for training")


def prepare_inference(args, model, run_config=None):
    """(model to infer with, exported): with --export the files are written and ``exported`` is
    True; otherwise the model behind the chosen precision and backend (``run_config`` gets an
    'inference' entry that the first-batch check fills in)."""
    if args.export:
        from common.export import export_model
        fmt, path = args.export
        if args.precision != 'fp32' or args.backend != 'eager':
            raise UserError('--export writes the fp32 model; drop --precision / --backend')
        for written in export_model(model, fmt, path):
            print(f'INFO: {model.model_name} exported to {written} ({fmt}; the model record is in the file: '
                  f'python -c "from common.export import load_exported; print(load_exported(\'{written}\').record)")')
        return model, True
    fast = accelerate(model, inference_config(args))
    if run_config is not None and fast is not model:
        run_config['inference'] = fast.record
    return fast, False


class _ExportAction(argparse.Action):
    """--export FORMAT FILE, the format checked as the command line is read."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values[0] not in ('onnx', 'torchscript'):
            parser.error(f"--export {values[0]}: the format is onnx or torchscript (--export onnx FILE)")
        setattr(namespace, self.dest, tuple(values))


def add_inference_arguments(p):
    g = p.add_argument_group('inference (evaluation and rendering)')
    g.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                   help='bf16: matrix products in bfloat16 (norms, softmax statistics and the output layer in '
                        'fp32); about 0.1 mm of MPJPE or less')
    g.add_argument('--backend', choices=['eager', 'compile', 'onnxruntime'], default='eager',
                   help='run the window forward with torch.compile (inductor) or ONNX Runtime; the first batch '
                        'is checked against eager fp32 (one warning line beyond 0.1 mm)')
    g.add_argument('--export', nargs=2, action=_ExportAction, default=None, metavar=('FORMAT', 'FILE'),
                   help='write the loaded model to FILE as onnx or torchscript (its window forward, dynamic '
                        'batch, the model record in the file; causal RetNet: also FILE.step.EXT, its recurrent '
                        'step) and stop')
