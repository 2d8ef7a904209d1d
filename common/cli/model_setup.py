"""The lifter a command line means: built from a checkpoint's record when there is one (flags that
only change how it runs apply, flags that contradict it are an error), else from the flags with the
release's meaning of absent switches. Shared by training, evaluation and lifting one's own video."""
from common import compat
from common.cli.command_line import accepted_kwargs, explicit_model_kwargs, infer_model_name
from common.errors import UserError
from common.train.checkpoint import split_checkpoint

# Model keywords that change how a stored network runs, not what it is: they apply to a checkpoint.
RUNTIME_MODEL_FLAGS = ('chunk_size', 'train_mode', 'dropout')


def _same(a, b):
    return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


def build_lifter(args, spec, checkpoint=None):
    """(model, name, config): from the checkpoint's record when there is one (flags that only
    change how it runs apply; flags that contradict it are an error); from the flags alone (with
    the release's meaning of absent switches) otherwise."""
    from models import build_model, get_entry
    record = None
    if checkpoint is not None:
        try:
            name, record = compat.model_spec_from_checkpoint(checkpoint)
        except UserError:
            if not args.model:
                raise
            name = args.model  # an official file no detector recognises: the flags say what it is
    else:
        name = infer_model_name(args)
    try:
        entry = get_entry(name)
        if record is not None and args.model and get_entry(args.model).name != entry.name:
            raise UserError(f'--model {args.model}, but the checkpoint holds {entry.name}: drop --model '
                            f'(the file decides the architecture)')
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    explicit = accepted_kwargs(entry.factory, explicit_model_kwargs(args))
    if record is not None:
        clash = [k for k, v in explicit.items() if k in record and k not in RUNTIME_MODEL_FLAGS
                 and not _same(v, record[k])]
        if clash:
            raise UserError('the checkpoint holds ' + ', '.join(f'{k}={record[k]!r}' for k in clash)
                            + '; the command line asks for ' + ', '.join(f'{k}={explicit[k]!r}' for k in clash)
                            + ': drop those flags (the file decides the architecture)')
    config = dict(compat.RELEASE_SWITCH_DEFAULTS.get(entry.name, {})) if record is None else record
    defaults = {'num_joints': spec.num_joints, 'layout': spec.skeleton.name}
    config = {**accepted_kwargs(entry.factory, defaults), **config, **explicit}
    ours = checkpoint is not None and split_checkpoint(checkpoint)[1]
    check_input_layout(record if ours else None, spec, config)
    if args.output_unit or not ours:  # ours keep their record (none: metres, as before units were recorded)
        config['output_unit'] = args.output_unit or spec.release_units.get(entry.name, 'm')
    step = args.tds or (compat.legacy_frame_step(checkpoint) if ours else None)
    if step:
        config['frame_step'] = step
    try:
        model = build_model(name, **config)
    except (TypeError, ValueError) as err:
        raise UserError(f'cannot build model {name} with {config}: {err}') from None
    return model, name, config


def check_input_layout(record, spec, config):
    """An official file takes the 2D layout of the data (COCO-17 detections: COCO-17 in, Human3.6M
    out); our files record theirs, and a model is not run on 2D of another layout."""
    if record is None:
        if spec.input_layout:
            config['input_layout'] = spec.input_layout
        return
    recorded = record.get('input_layout') or spec.skeleton.name
    if recorded != spec.keypoint_layout:
        raise UserError(f'the checkpoint\'s model takes {recorded} 2D keypoints, but this 2D file holds '
                        f'{spec.keypoint_layout}: evaluate it on 2D of its own layout (-k), or lift a detector\'s '
                        f'file with render.py --input-keypoints FILE, which converts the joints')


