"""Figures: training curves (animations and frame grids live here too)."""
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history, path):
    """Training loss and test score per epoch. history -- list of dicts with 'epoch',
    'train_loss', 'test' (and optionally 'test_ema')."""
    epochs = [h['epoch'] for h in history]
    fig, (ax_loss, ax_test) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], color='tab:blue')
    ax_loss.set(xlabel='epoch', ylabel='training loss', title='Training')
    ax_test.plot(epochs, [h['test'] for h in history], color='tab:orange', label='model')
    if any(h.get('test_ema') is not None for h in history):
        ax_test.plot(epochs, [h.get('test_ema') for h in history], color='tab:green', label='EMA')
        ax_test.legend()
    ax_test.set(xlabel='epoch', ylabel='test score (mm)', title='Evaluation')
    for ax in (ax_loss, ax_test):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
