/*
 * test_device.c - the spellings of --device: lb_device_parse ("cpu", "cuda", "cuda:N") and lb_device_set_parse
 * (those, a set "cuda:N,M,..." and "cuda:all"), each accepted form's value and each bad form's one-line error.
 * Only the spelling: whether a device exists is known when something is made on it.
 */
#include "lowbit.h"
#include "test.h"

#include <string.h>

int main(void) {
    lb_device d;
    lb_error e;
    int n, dev[LB_MAX_DEVICES];
    CHECK(lb_device_parse("cpu", &d, &e) == LB_OK && d.kind == LB_DEVICE_CPU, "cpu");
    CHECK(lb_device_parse("cuda", &d, &e) == LB_OK && d.kind == LB_DEVICE_CUDA && d.index == 0, "cuda");
    CHECK(lb_device_parse("cuda:3", &d, &e) == LB_OK && d.kind == LB_DEVICE_CUDA && d.index == 3, "cuda:3");
    CHECK(lb_device_parse("cuda:1,2", &d, &e) == LB_ERR_ARG, "a set where one device is taken");
    CHECK(lb_device_parse("gpu", &d, &e) == LB_ERR_ARG && strstr(e.msg, "unknown device 'gpu'"), "gpu: '%s'", e.msg);
    /* sets */
    CHECK(lb_device_set_parse("cpu", &d, &n, dev, &e) == LB_OK && d.kind == LB_DEVICE_CPU && n == 0, "cpu as a set");
    CHECK(lb_device_set_parse("cuda:2", &d, &n, dev, &e) == LB_OK && d.index == 2 && n == 0, "cuda:2 as a set");
    CHECK(lb_device_set_parse("cuda:all", &d, &n, dev, &e) == LB_OK && d.kind == LB_DEVICE_CUDA && d.index == 0 && n == -1, "cuda:all");
    CHECK(lb_device_set_parse("cuda:3,1,7", &d, &n, dev, &e) == LB_OK && d.kind == LB_DEVICE_CUDA && d.index == 3 && n == 3 &&
              dev[0] == 3 && dev[1] == 1 && dev[2] == 7,
          "cuda:3,1,7: index %d, n %d", d.index, n);
    const char *bad[] = {"cuda:1,1", "cuda:1,", "cuda:,1", "cuda:1,x", "cuda:1,2000", "cuda:-1,2", "cuda:1;2", "cuda:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.msg[0] = 0;
        CHECK(lb_device_set_parse(bad[i], &d, &n, dev, &e) == LB_ERR_ARG && e.msg[0] && !strchr(e.msg, '\n'), "'%s' accepted or '%s'",
              bad[i], e.msg);
    }
    CHECK(lb_device_set_parse(NULL, &d, &n, dev, &e) == LB_ERR_ARG, "NULL");
    TEST_DONE();
}
