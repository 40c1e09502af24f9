"""Validation-only probe: learn TagBlend's weights with a loss instead of searching them (results/tried/tagblend_trained.md).

    OMP_NUM_THREADS=1 python results/tried/tagblend_trained.py Data/howyoutag_makers

Written against model_blend.py as of commit 14b94f5, when TagBlend held its weights as parameters (counts, votes,
grams, own, peers, popularity) and ``terms()`` gave each term's [B, H] table; since then the weights are fixed
knobs (``self.mix``) and this script would need ``m.weights`` rebuilt as parameters to run again.
"""
import sys,torch,time,copy
sys.path.insert(0,'/work/main')
from data_load import load_dataset
from registry import build_model
from evaluation import full_split, evaluate
torch.manual_seed(0)
path=sys.argv[1]
d=load_dataset(path,verbose=False)
base=build_model('TagBlend',d,votes_k=50,power=2.0)
val=full_split(d,d.val)
def ev(m):
    r=evaluate(m,val,ks=(10,)); return round(r['recall@10'],4),round(r['ndcg@10'],4)
print('init',ev(base),flush=True)
with torch.no_grad():
    for k,v in dict(counts=1,votes=2,grams=2,peers=.1,own=3,popularity=1e-3).items(): base.weights[k].fill_(v)
print('hand',ev(base),flush=True)
tr=d.train
def run(name,mode,lr=1e-2,epochs=4,fix_pop=True,evid=False,topn=100):
    m=copy.deepcopy(base)
    with torch.no_grad():
        for k,v in dict(counts=1,votes=1,grams=0,peers=0,own=0,popularity=1e-3).items(): m.weights[k].fill_(v)
    params=[p for k,p in m.weights.items() if not (fix_pop and k=='popularity')]
    opt=torch.optim.Adam(params,lr=lr)
    g=torch.Generator().manual_seed(0)
    for ep in range(epochs):
        perm=torch.randperm(len(tr),generator=g)
        for lo in range(0,len(tr),1024):
            b=tr[perm[lo:lo+1024]]
            T=m.terms(b[:,0],b[:,1])
            s=sum(w*T[k] for k,w in m.weights.items())
            pos=b[:,2]
            if evid:
                ev_=sum(T[k] for k in T if k!='popularity').gather(1,pos[:,None]).squeeze(1)>0
                s,pos=s[ev_],pos[ev_]
            if mode=='softmax':
                loss=torch.nn.functional.cross_entropy(s,pos)
            else:
                top=torch.topk(s.detach(),topn,1).indices
                cand=torch.cat([pos[:,None],top],1)
                sc=s.gather(1,cand)
                sc[:,1:]=sc[:,1:].masked_fill(top==pos[:,None],-1e9)
                loss=torch.nn.functional.cross_entropy(sc,torch.zeros(len(sc),dtype=torch.long))
            opt.zero_grad(); loss.backward(); opt.step()
        print(name,ep,ev(m),{k:round(v.item(),3) for k,v in m.weights.items()},flush=True)
for args in [('soft_fixpop','softmax',dict()),('soft_fixpop_evid','softmax',dict(evid=True)),('top100','top',dict()),('top100_evid','top',dict(evid=True)),('top20','top',dict(topn=20))]:
    run(args[0],args[1],**args[2])
