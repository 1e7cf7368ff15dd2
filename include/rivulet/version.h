/* rivulet's version, for the command line and the peer id prefix (-RV0100-). */
#ifndef RIVULET_VERSION_H
#define RIVULET_VERSION_H

#define RV_VERSION_MAJOR 0
#define RV_VERSION_MINOR 1
#define RV_VERSION_PATCH 0
#define RV_VERSION_STRING "0.1.0"

#endif
