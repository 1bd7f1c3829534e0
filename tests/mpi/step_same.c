/* step_same.c: NAME_loss_grad then NAME_step gives, bit for bit, the weights
 * of NAME_train_step (on libmlp.a, 2 threads, 5 steps of 64 made-up
 * examples); NAME_step before any loss_grad fails with a message.
 * Exit 0 when all holds, else 1 with what failed. */
#include "mlp.h"

#include <stdio.h>
#include <string.h>

enum { N = 64, STEPS = 5 };

int main(void)
{
    static float x[N * MLP_INPUT_SIZE];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % MLP_OUTPUT_SIZE;
        for (int j = 0; j < MLP_INPUT_SIZE; j++)
            x[i * MLP_INPUT_SIZE + j] = (float)((i * 7 + j * 13) % 101) / 101.0f;
    }
    mlp *a = mlp_new(3), *b = mlp_new(3);
    if (!a || !b)
        return 1;
    if (mlp_step(a) == 0 || !strstr(mlp_error(a), "no gradients")) {
        fprintf(stderr, "step before loss_grad: did not fail ('%s')\n", mlp_error(a));
        return 1;
    }
    mlp_set_threads(a, 2), mlp_set_threads(b, 2);
    for (int s = 0; s < STEPS; s++) {
        mlp_train_step(a, N, x, y);
        mlp_loss_grad(b, N, x, y);
        if (mlp_step(b) != 0) {
            fprintf(stderr, "step: %s\n", mlp_error(b));
            return 1;
        }
    }
    for (int i = 0; i < MLP_NUM_PARAMS; i++) {
        int64_t dims[4], count = 1;
        int rank = mlp_param_shape(i, dims);
        for (int k = 0; k < rank; k++)
            count *= dims[k];
        if (memcmp(mlp_param(a, i), mlp_param(b, i), sizeof(float) * (size_t)count) != 0) {
            fprintf(stderr, "%s differs after %d steps\n", mlp_param_name(i), STEPS);
            return 1;
        }
    }
    mlp_free(a), mlp_free(b);
    return 0;
}
