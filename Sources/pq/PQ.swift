import PQCore
print("pq")
