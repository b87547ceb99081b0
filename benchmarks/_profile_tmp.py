import sys, time, torch, statistics
sys.path.insert(0, ".")
import torch.nn.functional as F
import vision_lab.transforms as T
from vision_lab.preprocessing import Preprocessing
from vision_lab.models import create_model
x8 = torch.randint(0,256,(5000,3,32,32),dtype=torch.uint8)
labels = torch.randint(0,10,(5000,))
g = torch.Generator().manual_seed(0)
aug = T.BatchAugmenter(T.preset("standard", 32), 32)
prep = Preprocessing(3, 32, (0.5,)*3, (0.25,)*3)
def med(fn, n=40):
    fn(); fn(); ts=[]
    for _ in range(n):
        t=time.perf_counter(); fn(); ts.append(time.perf_counter()-t)
    return round(statistics.median(ts)*1e3,3)
xf = x8[:64].float(); f = torch.rand(64,1,1,1)*0.4+0.8; h=(torch.rand(64,1,1,1)-0.5)*0.2
for th in (1,2):
    torch.set_num_threads(th)
    print("threads", th)
    print(" augment", med(lambda: aug(x8[:64], g)))
    for name, fn in [("crop", lambda: T._random_crop(xf, g, 32, 4)), ("flip", lambda: T._random_horizontal_flip(xf, g, 0.5)),
                     ("jitter", lambda: T._color_jitter(xf, g, 0.2,0.2,0.2,0.1)),
                     ("bright", lambda: T._adjust_brightness(xf, f)), ("contrast", lambda: T._adjust_contrast(xf, f)),
                     ("sat", lambda: T._adjust_saturation(xf, f)), ("hue", lambda: T._adjust_hue(xf, h)),
                     ("rot", lambda: T._random_rotation(xf, g, 15)), ("prep", lambda: prep(x8[:64])),
                     ("index", lambda: x8[torch.randperm(5000)[:64]])]:
        print(" ", name, med(fn))
    for mname in ("mlp", "cnn"):
        m = create_model(mname,10,3,32); opt = torch.optim.Adam(m.parameters(), 1e-3); m.train()
        xx = prep(x8[:64]); y = labels[:64]
        def fwd(): return F.cross_entropy(m(xx), y)
        def step():
            opt.zero_grad(set_to_none=True); l = F.cross_entropy(m(xx), y); l.backward(); opt.step(); l.item()
        def full():
            idx = torch.randperm(5000)[:64]
            x = prep(aug(x8[idx], g)); yy = labels[idx]
            logits = m(x); l = F.cross_entropy(logits, yy); l.item()
            opt.zero_grad(set_to_none=True); l.backward(); opt.step()
            (logits.argmax(1) == yy).sum().item()
        print(" ", mname, "step", med(step, 20), "full", med(full, 20))
        if mname == "cnn":
            mc = create_model(mname,10,3,32).to(memory_format=torch.channels_last); optc = torch.optim.Adam(mc.parameters(), 1e-3)
            xc = xx.contiguous(memory_format=torch.channels_last)
            def stepc():
                optc.zero_grad(set_to_none=True); l = F.cross_entropy(mc(xc), y); l.backward(); optc.step(); l.item()
            def stepc2():
                optc.zero_grad(set_to_none=True); l = F.cross_entropy(mc(xx), y); l.backward(); optc.step(); l.item()
            print(" ", "cnn channels_last step", med(stepc, 20), "cl model, contiguous input", med(stepc2, 20))
