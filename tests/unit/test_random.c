/* test_random.c: util.c's MT19937 against NumPy's legacy RandomState, whose
 * draws a seeded training-mode Dropout's mask must repeat (onnx.c). The
 * expected values were printed by NumPy (python3-numpy, Debian):
 *   np.random.RandomState(s).random_sample(3), .randint(0, 2**32, 3). */
#include <criterion/criterion.h>

#include "cnnc.h"

/* random_sample's first three doubles for a seed, exactly */
static void first_three(uint32_t seed, double a, double b, double c)
{
    Mt19937 mt;
    mt_seed(&mt, seed);
    double want[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        double got = mt_double(&mt);
        cr_assert_eq(got, want[i], "seed %u, draw %d: %.17g, NumPy %.17g", seed, i, got, want[i]);
    }
}

Test(random, numpy_random_sample)
{
    first_three(0, 0.5488135039273248, 0.7151893663724195, 0.6027633760716439);
    first_three(42, 0.3745401188473625, 0.9507143064099162, 0.7319939418114051);
    first_three(4294967295u, 0.0976320289940138, 0.9123828453026218, 0.78903530185164);
}

/* the words themselves (randint(0, 2**32) is one word each) */
Test(random, numpy_words)
{
    Mt19937 mt;
    mt_seed(&mt, 0);
    cr_assert_eq(mt_next(&mt), 0x8c7f0aacu);
    cr_assert_eq(mt_next(&mt), 0x97c4aa2fu);
    cr_assert_eq(mt_next(&mt), 0xb716a675u);
}

/* past the first twist of the state (624 words; a draw takes two) */
Test(random, numpy_after_1000)
{
    Mt19937 mt;
    mt_seed(&mt, 0);
    for (int i = 0; i < 1000; i++)
        mt_double(&mt);
    cr_assert_eq(mt_double(&mt), 0.5928802707811576);
}
