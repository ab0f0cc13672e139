"""Transfer learning (seed 003): a ResNet-50 backbone without its top, frozen, plus a new
global-average-pool + dense head trained on an image folder (one sub-folder per class).

Command (the weights are a torchvision ResNet-50 state_dict file you supply; nothing is downloaded):
  python -m experiments.run --config=resnet50_transfer:/data/cats_and_dogs \\
      --config.init_from=/weights/resnet50-0676ba61.pth --workdir=runs/transfer
The folder argument sets ``dataset.name='folder:PATH'``; 20% of each class is held out for validation
(and is the test set unless ``--config.dataset.test_dir=FOLDER`` is given). Smoke test:
``--config=resnet50_transfer:/data/cats_and_dogs,runlocal``.
"""

from configs._base import base_config, parse_arg, runlocal


def get_config(arg=None):
    args = parse_arg(arg, "resnet50_transfer", positional="folder", folder="", runlocal=False)
    config = base_config()
    config.dataset.name = f"folder:{args.folder}"
    config.dataset.target_size = (224, 224)
    config.dataset.interpolation = "bilinear"
    config.dataset.validation_split = 0.2
    config.model.name = "transfer"
    config.model.kwargs.backbone = "resnet50"
    config.model.kwargs.freeze_backbone_bn = True
    config.frozen = ("backbone",)
    config.init_from = ""  # required in practice: a torchvision ResNet-50 .pth
    config.num_epochs = 5
    config.batch_size = 32
    config.eval_batch_size = 64
    config.optimizer.learning_rate = 1e-3
    config.augment.hflip = True
    config.augment.rotation_degrees = 10.0
    config.augment.zoom = (0.9, 1.1)
    if args.runlocal:
        runlocal(config)
    return config
