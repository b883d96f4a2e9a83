# Instruments gemm_kn.c (a copy; run.sh) with rdtsc per 192-column chunk and around the store.
import sys
p=sys.argv[1]+'/gemm_kn.c'; s=open(p).read()
s=s.replace('#include <string.h>\n','#include <string.h>\n#include <x86intrin.h>\nunsigned long long kn_best[4]={~0ULL,0,0,0}; unsigned long long kn_store[2]={~0ULL,0};\n',1)
a='            int64_t c1 = c;\n'; assert a in s
s=s.replace(a,'            unsigned long long T0=__rdtsc();\n'+a)
a='            for (int64_t tt = c; tt < e; tt++) {\n'; assert a in s
s=s.replace(a,'            unsigned long long T1=__rdtsc();\n'+a)
import re
m=re.search(r'\(wd == mrp \? j->isa.kernel : j->isa.half\)[^\n]*\n(?:[^\n]*prefetch_c[^\n]*\n)?                }\n            }\n', s); assert m
a=m.group(0)
s=s.replace(a,a+'            unsigned long long T2=__rdtsc(); if(t==0 && e-c==chunk && sc==KN_SB && T2-T0<kn_best[0]){kn_best[0]=T2-T0;kn_best[1]=T1-T0;kn_best[2]=T2-T1;kn_best[3]=(e-c)*nr*sc*j->P;}\n')
a='    if (j->final) store(j, a * nr, min64(b * nr, j->Q));\n'; assert a in s
s=s.replace(a,'    unsigned long long T3=__rdtsc();\n'+a+'    if(t==0&&j->final){T3=__rdtsc()-T3; if(T3<kn_store[0]){kn_store[0]=T3;kn_store[1]=(b-a)*nr*j->P;}}\n')
open(p,'w').write(s)
