"""`spotdiff where`: where and why frameworks diverge during training (no framework import here).

Each framework's child (`locate.child`) records a few training steps from the shared starting
point, in float32 and float64: every layer's forward output, the loss, every gradient and every
parameter after the update. The parent compares them pair by pair against a measured noise floor
(`compare`), finds the first divergence, the layer that introduces it and the odd framework out
(`verdict`), and confirms a cause only by rerunning with that one difference aligned (`causes`).
"""
