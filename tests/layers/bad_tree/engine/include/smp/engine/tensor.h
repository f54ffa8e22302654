// A public header of the fake engine.
#pragma once
