/* registry.h - the one list of implemented ops (X-macro). Each entry X(Name) refers to
 * `const otl_op otl_op_Name` defined in an ops/ file; adding an op is one line in the list of
 * its family plus its file. The families are separate lists only so that they can grow
 * independently. */
#ifndef OTL_REGISTRY_H
#define OTL_REGISTRY_H

#include "ops/list_core.h"
#include "ops/list_elementwise.h"
#include "ops/list_grad.h"
#include "ops/list_linalg.h"
#include "ops/list_nn.h"
#include "ops/list_shape.h"

#define OTL_OPS(X) OTL_OPS_CORE(X) OTL_OPS_GRAD(X) OTL_OPS_ELEMENTWISE(X) OTL_OPS_LINALG(X) OTL_OPS_NN(X) OTL_OPS_SHAPE(X)

#endif
