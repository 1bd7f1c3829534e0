#include "d20.h"
#include <stdlib.h>
int main(int argc, char **argv)
{
    d20 *net = d20_new(1);
    float *x = calloc(20 - atoi(argv[1]), sizeof *x), out[10];
    d20_forward(net, 1, x, out);
    d20_free(net);
    free(x);
    return 0;
}
