"""Third-party noise is filtered by exact message and module; our own warnings stay visible."""

import logging
import warnings

from dreamlab.core.quiet import own_checkpoint_dir, quiet_third_party


def _warn_from(module: str, message: str, category: type[Warning] = UserWarning) -> None:
    exec("import warnings\nwarnings.warn(m, c)", {"__name__": module, "m": message, "c": category})


def test_known_noise_is_hidden_and_ours_is_not(tmp_path, caplog):
    quiet_third_party()
    quiet_third_party()  # idempotent
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        _warn_from(
            "lightning.pytorch.utilities._pytree",
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...",
            FutureWarning,
        )
        _warn_from("dreamlab.worldmodel.train", "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning)
        _warn_from("dreamlab.data.store", "something of ours")
        with own_checkpoint_dir(tmp_path / "ours"):
            _warn_from(
                "lightning.pytorch.callbacks.model_checkpoint",
                f"Checkpoint directory {tmp_path / 'ours'} exists and is not empty.",
            )
            _warn_from(
                "lightning.pytorch.callbacks.model_checkpoint",
                f"Checkpoint directory {tmp_path / 'theirs'} exists and is not empty.",
            )
    assert [str(w.message) for w in seen] == [
        "`isinstance(treespec, LeafSpec)` is deprecated",
        "something of ours",
        f"Checkpoint directory {tmp_path / 'theirs'} exists and is not empty.",
    ]
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        log.info("💡 Tip: For seamless cloud logging ...")
        log.info("GPU available: False, used: False")
        log.info("`Trainer.fit` stopped: `max_steps=50` reached.")
    assert [r.getMessage() for r in caplog.records] == ["`Trainer.fit` stopped: `max_steps=50` reached."]
