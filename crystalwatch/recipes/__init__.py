"""Reference TRL recipes: Tulu 3-style SFT -> DPO -> RLVR with crystalwatch attached."""
