"""Reference TRL recipes, shipped with the package: Tulu 3-style SFT -> DPO -> RLVR with crystalwatch attached.

    crystalwatch recipe chain --config smoke/chain                              # CPU, offline, about a minute
    crystalwatch recipe sft --config olmo2-1b/sft --accelerate-config zero3     # 8 GPUs
    python -m crystalwatch.recipes.tulu3 --config PATH                          # the same chain, without the CLI

``sft``, ``dpo`` and ``grpo`` are thin scripts in the style of ``trl/scripts/*.py``; ``tulu3`` runs a chain of
them. Their YAML configs ship as package data (``configs/<model>/<stage>.yaml``), and so do the accelerate
configs (``accelerate_configs/{ddp,fsdp2,zero2,zero3}.yaml``) and the smoke RLVR prompts (``data/``).
Importing this package (or :mod:`crystalwatch.recipes.launch`) loads neither torch nor TRL.
"""
