// Panel GEMM phases (run.sh): links a copy of the kernels instrumented by instrument_panel.py; per
// shape, the fastest 96-row panel of thread 0 and the shares of decode, multiply and epilogue;
// y rotates over 64 buffers (cold, as in a training step).
#include "cqlora.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern unsigned long long cq_best[4];
static float rnd(void){return (float)rand()/(float)RAND_MAX-0.5f;}
static void *al(size_t n){void*p;if(posix_memalign(&p,64,n?n:64))abort();memset(p,0,n);return p;}
int main(int argc,char**argv){int TH=atoi(argv[1]); double PEAK=77.7;
 int shapes[][3]={{256,1536,576},{256,576,1536},{256,576,576},{128,11008,4096}};
 for(int s=0;s<4;s++){int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2];
  float *w=al(4L*N*K),*x=al(4L*M*K),*y=al(4L*M*N); float*ys[64]; for(int u=0;u<64;u++)ys[u]=al(4L*M*N);
  for(long i=0;i<(long)N*K;i++)w[i]=rnd(); for(long i=0;i<(long)M*K;i++)x[i]=rnd();
  long n=(long)N*K; uint8_t*packed=al((n+1)/2); float*absmax=al(4*(n/64+1)); int64_t bad;
  cq_quantize_4bit(w,n,64,CQ_NF4,packed,absmax,&bad,1);
  cq_qweight q={packed,N,K,64,cq_codebook(CQ_NF4),absmax,NULL,NULL,NULL,0,0};
  void*s1=al(cq_fused_linear_scratch_bytes(M,N,K,0,TH)+64);
  for(int v=0;v<2;v++){ cq_best[0]=~0ULL;
   for(int i=0;i<(s==3?2:20);i++){ if(v==0) cq_fused_linear(x,M,&q,NULL,NULL,0,0,NULL,ys[i%64],s1,TH); else cq_matmul_nt(x,M,w,N,K,ys[i%64],s1,TH);}
   double f=2.0*M*96*K;
   printf("%s M=%d N=%d K=%d: best panel %.0f%% of peak; of its time: weights %.0f%% multiply %.0f%% (multiply alone = %.0f%% of peak) writeout %.0f%%\n",v?"nt-f32 ":"fwd4bit",M,N,K,
     100*f/cq_best[0]/PEAK,100.0*cq_best[1]/cq_best[0],100.0*cq_best[2]/cq_best[0],100*f/cq_best[2]/PEAK,100.0*cq_best[3]/cq_best[0]);}
  free(w);free(x);free(y);for(int u=0;u<64;u++)free(ys[u]);free(packed);free(absmax);free(s1);}
 return 0;}
