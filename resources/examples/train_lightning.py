"""The same model in PyTorch Lightning: python train_lightning.py runs/lightning [steps]"""
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from backprop_lab.integrations.lightning import BackpropLabCallback
from my_net import Net, make_data


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = Net(classes=4, act="sigmoid", depth=6)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}   # logits: the record's accuracy

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/lightning"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*make_data()), batch_size=64, shuffle=True)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, gradient_clip_val=5.0,
                         callbacks=[BackpropLabCallback(run_dir, every=1)])
    trainer.fit(Classifier(), loader)
    print(f"recorded {steps} steps in {run_dir}")
