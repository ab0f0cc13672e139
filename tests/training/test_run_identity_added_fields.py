"""A workdir recorded before a config field existed keeps its identity when the field has that run's value."""

from cnnjax.training.run_identity import config_differences
from configs._base import base_config


def test_a_config_json_without_loss_is_the_softmax_cross_entropy_run():
    config = base_config()
    saved = config.to_dict()
    del saved["loss"]  # written before config.loss existed
    assert config_differences(saved, config) == []
    config.loss = "sigmoid_binary_cross_entropy"
    assert config_differences(saved, config) == [
        "loss: 'softmax_cross_entropy' in the workdir's run, 'sigmoid_binary_cross_entropy' now"]
