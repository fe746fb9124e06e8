import PQKit
